#!/bin/sh
# metrics: `ipvs-trace serve` as the DaemonSet runs it, scraped over HTTP with busybox wget.
# Two services: the seed cluster's http port (rr over its three pods, named from the seed
# snapshot; 9 connections to the ClusterIP from the client pod, 3 to the LoadBalancer IP from
# outside) and a plain wrr 2:1 service no snapshot knows (12 connections, by address).
# Asserted: every connection counter equals the kernel's Conns (ipvsadm -Ln --stats) per
# backend (the named Service summed over its two VIPs), nothing lost, unreadable or
# malformed, /healthz ready, the table metrics equal ipvsadm's weights and counters, nothing
# printed on stdout, and SIGTERM ends it with status 0 and the summary.
set -e
. /lab/lib.sh
node_setup
seed_node

# Addresses no other scenario uses: a real server deleted while its entries linger goes to
# IPVS's trash and comes back, counters and all, when the same VIP and address are added again
# (5.10 counted nat's connections here: --stats 9/5 for 8/4 scheduled).
VIP=172.31.0.80
add_vip $VIP
ipvsadm -A -t $VIP:80 -s wrr
mk_pod mpod1 10.245.17.1 8080
mk_pod mpod2 10.245.17.2 8080
ipvsadm -a -t $VIP:80 -r 10.245.17.1:8080 -m -w 2
ipvsadm -a -t $VIP:80 -r 10.245.17.2:8080 -m -w 1
mk_client mclient 198.51.100.70

METRICS=127.0.0.1:9808
serve_start serve --metrics-addr $METRICS --kube-snapshot /lab/fixtures/seed-snapshot.json
dump healthz wget -q -O - "http://$METRICS/healthz"

client_start seed client-pod --to $SEED_CLUSTER_IP:80 --count 9
client_start lb outside --to $SEED_EXTERNAL_IP:80 --count 3
client_start wrr mclient --to $VIP:80 --count 12
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
dump_clients
dump_stats
# The drop counters reach the metrics once a second, the table metrics' read is at most a
# second old: two seconds after the settled stats, both are of the same moment as them.
sleep 2
dump metrics wget -q -O - "http://$METRICS/metrics"

# One that ignores SIGTERM must not hang the boot: serve_stop kills it after 20 s (and the
# test fails on its status).
serve_stop serve
