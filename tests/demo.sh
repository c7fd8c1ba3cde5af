#!/bin/sh
# demo.sh: the seed scenario of DESIGN.md, run by `cargo xtask demo` and streamed live.
#
# One Kubernetes node (cn-beijing.10.245.96.43) whose kube-proxy runs in IPVS mode, Service
# ratel/vpaas-demo-prod (type LoadBalancer) with three pods, and clients connecting while
# `ipvs-trace trace` prints every decision IPVS makes.
set -e
. /lab/lib.sh

say() {
    echo
    echo "### $*"
}

node_setup

CLUSTER_IP=172.31.42.227
EXTERNAL_IP=10.245.11.252
NODE_IP=10.245.96.43

say "Service ratel/vpaas-demo-prod: ClusterIP $CLUSTER_IP, external IP $EXTERNAL_IP,"
echo "    ports 80->8080 (nodePort 32380) and 50091->50091 (nodePort 31502); 3 pods."
echo "    kube-proxy (IPVS mode) binds the service addresses on the dummy kube-ipvs0 and"
echo "    programs one IPVS virtual service per address and port: scheduler rr, forward Masq."
add_vip $CLUSTER_IP
add_vip $EXTERNAL_IP
add_node_ip $NODE_IP

# The pod of the field note, and two more replicas so round robin shows.
POD=vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d
echo "    pods (each in its own network namespace, serving :8080 and :50091):"
echo "      $POD-dgzsm  10.245.112.32"
echo "      $POD-x7k2p  10.245.112.47"
echo "      $POD-q9wfn  10.245.113.15"
mk_pod dgzsm 10.245.112.32 8080 50091
mk_pod x7k2p 10.245.112.47 8080 50091
mk_pod q9wfn 10.245.113.15 8080 50091

for vs in $CLUSTER_IP:80:8080 $EXTERNAL_IP:80:8080 $NODE_IP:32380:8080 \
    $CLUSTER_IP:50091:50091 $EXTERNAL_IP:50091:50091 $NODE_IP:31502:50091; do
    vip=${vs%:*}
    port=${vs##*:}
    ipvsadm -A -t "$vip" -s rr
    for pod in 10.245.112.32 10.245.112.47 10.245.113.15; do
        ipvsadm -a -t "$vip" -r "$pod:$port" -m -w 1
    done
done
say "The rules, as kube-proxy programs them on node cn-beijing.$NODE_IP (ipvsadm -Ln)"
ipvsadm -Ln

# A client pod on this node, and a client outside the cluster.
mk_client client-pod 10.245.97.12
mk_client outside 198.51.100.7

say "Starting \`ipvs-trace trace\`: one line per connection, as IPVS schedules it"
TRACE_FORMAT=table
TRACE_TO_CONSOLE=1
start_trace demo

say "client pod 10.245.97.12 -> ClusterIP $CLUSTER_IP:80, 6 connections"
in_ns client-pod lab-net connect --to $CLUSTER_IP:80 --count 6 --interval-ms 300 >/dev/null
say "client pod 10.245.97.12 -> ClusterIP $CLUSTER_IP:50091, 3 connections"
in_ns client-pod lab-net connect --to $CLUSTER_IP:50091 --count 3 --interval-ms 300 >/dev/null
say "outside client 198.51.100.7 -> external IP $EXTERNAL_IP:80, 3 connections"
in_ns outside lab-net connect --to $EXTERNAL_IP:80 --count 3 --interval-ms 300 >/dev/null
say "outside client 198.51.100.7 -> NodePort $NODE_IP:32380, 3 connections"
in_ns outside lab-net connect --to $NODE_IP:32380 --count 3 --interval-ms 300 >/dev/null
IPVS_SNAPSHOT_AT=$(uptime_cs)

say "Stopping the trace (SIGINT): its summary counts the new connections per pod"
stop_trace

# IPVS folds its per-CPU counters into what ipvsadm shows every 2 s.
ipvs_settle
say "The kernel's own view for comparison: ipvsadm -Ln --stats (Conns = connections scheduled)"
ipvsadm -Ln --stats
say "and ipvsadm -Ln (after Forward: Weight, ActiveConn, InActConn; closed ones are inactive)"
ipvsadm -Ln
