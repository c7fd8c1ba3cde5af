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

CLUSTER_IP=$SEED_CLUSTER_IP
EXTERNAL_IP=$SEED_EXTERNAL_IP
NODE_IP=$SEED_NODE_IP
POD=vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d

say "Service ratel/vpaas-demo-prod: ClusterIP $CLUSTER_IP, external IP $EXTERNAL_IP,"
echo "    ports 80->8080 (nodePort 32380) and 50091->50091 (nodePort 31502); 3 pods."
echo "    kube-proxy (IPVS mode) binds the service addresses on the dummy kube-ipvs0 and"
echo "    programs one IPVS virtual service per address and port: scheduler rr, forward Masq."
echo "    pods (each in its own network namespace, serving :8080 and :50091):"
echo "      $POD-dgzsm  10.245.112.32"
echo "      $POD-x7k2p  10.245.112.47"
echo "      $POD-q9wfn  10.245.113.15"
echo "    clients: the pod ratel/vpaas-demo-client-6f8b9c7d5-kq2lm (10.245.97.12) and"
echo "    198.51.100.7 outside the cluster."
seed_node
say "The rules, as kube-proxy programs them on node cn-beijing.$NODE_IP (ipvsadm -Ln)"
ipvsadm -Ln

say "A Kubernetes API server (the in-repo one) serves the cluster's objects on 127.0.0.1"
kube_apiserver_start /lab/fixtures/seed-snapshot.json
echo "    $(cat "$LAB_TMP/kube-apiserver.log")"

say "Starting \`ipvs-trace trace --kubeconfig ...\`: one line per connection, as IPVS"
echo "    schedules it, with the Service, pod and node names from the API"
TRACE_FORMAT=table
TRACE_TO_CONSOLE=1
trace_bg demo --kubeconfig "$LAB_KUBECONFIG"
trace_ready 60
# Names never hold events back; the demo waits for them only so that every line shows them.
wait_for "$LAB_TMP/demo.stderr" "kubernetes names synced" 60 || lab_log "names not synced yet"
cat "$LAB_TMP/demo.stderr"

say "client pod 10.245.97.12 -> ClusterIP $CLUSTER_IP:80, 6 connections"
in_ns client-pod lab-net connect --to $CLUSTER_IP:80 --count 6 --interval-ms 300 >/dev/null
say "client pod 10.245.97.12 -> ClusterIP $CLUSTER_IP:50091, 3 connections"
in_ns client-pod lab-net connect --to $CLUSTER_IP:50091 --count 3 --interval-ms 300 >/dev/null
say "outside client 198.51.100.7 -> external IP $EXTERNAL_IP:80, 3 connections"
in_ns outside lab-net connect --to $EXTERNAL_IP:80 --count 3 --interval-ms 300 >/dev/null
say "outside client 198.51.100.7 -> NodePort $NODE_IP:32380, 3 connections"
in_ns outside lab-net connect --to $NODE_IP:32380 --count 3 --interval-ms 300 >/dev/null
say "pod $POD-dgzsm starts terminating (its endpoint in the EndpointSlice says so);"
echo "    until kube-proxy drains it, IPVS still picks it: those lines are marked"
kube_apply /lab/fixtures/seed-terminating.json
# The watch delivers the change in milliseconds; the demo leaves it a comfortable margin.
sleep 2
in_ns client-pod lab-net connect --to $CLUSTER_IP:80 --count 3 --interval-ms 300 >/dev/null
IPVS_SNAPSHOT_AT=$(uptime_cs)

say "Stopping the trace (SIGINT): its summary counts the new connections per pod"
stop_trace

# IPVS folds its per-CPU counters into what ipvsadm shows every 2 s.
ipvs_settle
say "The kernel's own view for comparison: ipvsadm -Ln --stats (Conns = connections scheduled)"
ipvsadm -Ln --stats
say "and ipvsadm -Ln (after Forward: Weight, ActiveConn, InActConn; closed ones are inactive)"
ipvsadm -Ln
