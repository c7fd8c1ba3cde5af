#!/bin/sh
# names: live Kubernetes names. The seed node, the in-repo API server in the guest serving the
# seed's objects, and `ipvs-trace trace --kubeconfig`. Once the watches have synced: 6
# connections from the client pod to the ClusterIP's http port, 3 to its grpc port, 3 from
# outside to the http NodePort. Then pod dgzsm's endpoint turns terminating (the EndpointSlice
# replaced on the API server; IPVS keeps routing to it: the stale-endpoint case users hit) and
# the client pod makes 6 more connections to the ClusterIP.
# Asserted: each event equals its ipvsadm -Lnc entry and carries the seed's Service, pod and
# node names; dgzsm's events after the change, and only those, are backend_terminating; the
# summary, keyed by names, matches ipvsadm --stats. Then a trace with --service on the grpc
# port: the kernel filters by the Service's addresses, and only the grpc connections come out.
set -e
. /lab/lib.sh
node_setup
seed_node
kube_apiserver_start /lab/fixtures/seed-snapshot.json

# Debug logs of the watches: one line per object change, which the scenario waits on.
export RUST_LOG=ipvs_trace::kube=debug
start_trace trace --kubeconfig "$LAB_KUBECONFIG"
unset RUST_LOG
trace_wait_stderr "kubernetes names synced" 60

client_start http client-pod --to $SEED_CLUSTER_IP:80 --count 6
client_start grpc client-pod --to $SEED_CLUSTER_IP:50091 --count 3
client_start nodeport outside --to $SEED_NODE_IP:32380 --count 3
client_wait || lab_log "some connections failed (see the client dumps)"
wait_lines "$LAB_TMP/trace.out" 12 20 || lab_log "fewer than 12 events before the change"

kube_apply /lab/fixtures/seed-terminating.json
trace_wait_stderr "kubernetes endpointslices: applied ratel/vpaas-demo-prod-8t5xq" 30
client_start late client-pod --to $SEED_CLUSTER_IP:80 --count 6
client_wait || lab_log "some connections failed (see the client dumps)"

dump_ipvs
stop_trace 18
dump_clients
dump_stats

# The kernel-side name filter: --service on the grpc port only. Once the names are synced the
# probes filter by the Service's addresses; http and NodePort connections are filtered out.
start_trace trace_svc --kubeconfig "$LAB_KUBECONFIG" --service ratel/vpaas-demo-prod:grpc
trace_wait_stderr "the kernel filters by name now" 60
client_start svc_http client-pod --to $SEED_CLUSTER_IP:80 --count 3
client_start svc_grpc client-pod --to $SEED_CLUSTER_IP:50091 --count 3
client_start svc_nodeport outside --to $SEED_NODE_IP:32380 --count 2
client_wait || lab_log "some connections failed (see the named-* dumps)"
dump_ipvs svc
stop_trace 3
for _tag in svc_http svc_grpc svc_nodeport; do
    dump "named-$_tag" cat "$LAB_TMP/client-$_tag.out"
done
