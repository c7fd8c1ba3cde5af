#!/bin/sh
# snapshot: the seed's names with no API server, from `--kube-snapshot` (the seed's
# `kubectl get -o json` output), and the --service filter on a named Service port. The http
# port is reached at the ClusterIP (6 connections from the client pod), the LoadBalancer
# ingress IP and the NodePort (3 each from outside); 3 connections to the grpc port must be
# filtered out.
# Asserted: 12 events, each equal to its ipvsadm -Lnc entry, named as with the live API; the
# summary has one line for the Service port, with its three addresses, matching --stats.
set -e
. /lab/lib.sh
node_setup
seed_node

start_trace trace --kube-snapshot /lab/fixtures/seed-snapshot.json \
    --service ratel/vpaas-demo-prod:http
client_start http client-pod --to $SEED_CLUSTER_IP:80 --count 6
client_start lb outside --to $SEED_EXTERNAL_IP:80 --count 3
client_start nodeport outside --to $SEED_NODE_IP:32380 --count 3
client_start grpc client-pod --to $SEED_CLUSTER_IP:50091 --count 3
client_wait || lab_log "some connections failed (see the client dumps)"

dump_ipvs
stop_trace 12
dump_clients
dump_stats
