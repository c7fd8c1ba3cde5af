#!/bin/sh
# Benchmark `memory` (cargo xtask bench): the RSS of `ipvs-trace serve` (the DaemonSet's
# process) with a large cluster's names indexed. /lab/cluster.json (written by xtask) holds
# 500 nodes, 100k pods, 20k Services and their 20k EndpointSlices as a `kubectl get -o json`
# List. Three runs of serve, one after the other:
#   baseline  --no-kube: the probes, the ring, the metrics, no names;
#   watch     --kubeconfig to the lab's API server serving every object (the real list/watch
#             path, paged 500 at a time as kube-rs lists);
#   snapshot  --kube-snapshot /lab/cluster.json (the same objects from a file).
# Each: VmRSS once the index is built (watch: the `names synced` line; snapshot, loaded before
# the probes, and baseline: the `tracing` line), then
# EVENTS connections through two of the cluster's Services (their ClusterIPs and pods, so
# every event resolves through the big index), VmRSS after them, and VmHWM (the peak).
# Printed for xtask: `bench: memory mode=M synced_cs=T objects=O ready_kb=R events_kb=E
# hwm_kb=H` and `bench: memory mode=apiserver rss_kb=K`.
set -e
. /lab/lib.sh
node_setup

# EVENTS, VIPS (two ClusterIPs of the cluster) and OBJECTS (in the file) come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
EVENTS=${EVENTS:-4000}
VIPS=${VIPS:-172.16.0.1 172.16.0.2}
METRICS=127.0.0.1:9808

# Service s's pods are 5s..5s+4 (10.0.0.0/8 + n); two of them serve each Service here.
s=0
for vip in $VIPS; do
    s=$((s + 1))
    add_vip "$vip"
    ipvsadm -A -t "$vip:80" -s rr
    for e in 0 1; do
        ip=10.0.0.$((s * 5 + e))
        mk_pod "p$s$e" "$ip" 8080
        ipvsadm -a -t "$vip:80" -r "$ip:8080" -m -w 1
    done
done
# Two clients that are pods of the cluster too (pods 1000 and 1001: 10.0.3.232, 10.0.3.233).
mk_client c1 10.0.3.232
mk_client c2 10.0.3.233

# kb FIELD PID: FIELD (VmRSS, VmHWM) of PID in kB.
kb() {
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"
}

# measure MODE READY-LINE NAME-ARGS...: one serve run, its `bench: memory` line. Its variables
# are m_*: sh has one namespace, and lib.sh's helpers use _* ones (client_wait's `_pid`).
measure() {
    m_mode=$1
    m_ready=$2
    shift 2
    set -- --metrics-addr $METRICS "$@"
    [ -z "$LAB_IP_VS_BTF" ] || set -- "$@" --btf "$LAB_IP_VS_BTF"
    : >"$LAB_TMP/serve-$m_mode.stderr"
    m_t0=$(uptime_cs)
    RUST_BACKTRACE=1 ipvs-trace serve "$@" >/dev/null 2>"$LAB_TMP/serve-$m_mode.stderr" &
    m_pid=$!
    echo "$m_pid" >>"$LAB_PIDS"
    if ! wait_for "$LAB_TMP/serve-$m_mode.stderr" "$m_ready" 900; then
        cat "$LAB_TMP/serve-$m_mode.stderr"
        die "serve ($m_mode) never printed '$m_ready'"
    fi
    m_synced=$(($(uptime_cs) - m_t0))
    # The index is built when the line comes; let the allocator settle what the build freed.
    sleep 2
    m_ready_kb=$(kb VmRSS $m_pid)
    # `names synced: 100000 pods, 20000 services, ...`: their sum; a snapshot is loaded before
    # the probes, silently, so its count is the file's (OBJECTS).
    m_objects=$(sed -n 's/.*names synced: //p' "$LAB_TMP/serve-$m_mode.stderr" |
        awk '{ for (i = 1; i <= NF; i += 2) n += $i } END { print n + 0 }')
    [ "$m_objects" -gt 0 ] || [ "$m_mode" != snapshot ] || m_objects=${OBJECTS:-0}
    grep 'names synced' "$LAB_TMP/serve-$m_mode.stderr" || true
    for vip in $VIPS; do
        client_start "$m_mode-$vip" c1 --to "$vip:80" --count $((EVENTS / 4)) --rst
        client_start "$m_mode-$vip-2" c2 --to "$vip:80" --count $((EVENTS / 4)) --rst
    done
    client_wait || lab_log "some connections failed"
    # The events reach serve through the ring within milliseconds; 2 s covers a busy vCPU.
    sleep 2
    if ! kill -0 $m_pid 2>/dev/null; then
        m_st=0
        wait $m_pid || m_st=$?
        cat "$LAB_TMP/serve-$m_mode.stderr"
        die "serve ($m_mode) exited with status $m_st during the connections"
    fi
    m_events_kb=$(kb VmRSS $m_pid)
    m_hwm_kb=$(kb VmHWM $m_pid)
    wget -q -O - "http://$METRICS/metrics" | grep '^ipvs_trace_connections_total' | head -3 || true
    kill -INT $m_pid
    m_st=0
    wait $m_pid || m_st=$?
    sed -n '/^ipvs-trace summary/,/^  TCP/p' "$LAB_TMP/serve-$m_mode.stderr"
    [ "$m_st" -eq 0 ] || die "serve ($m_mode) exited with status $m_st"
    echo "bench: memory mode=$m_mode synced_cs=$m_synced objects=${m_objects:-0} ready_kb=$m_ready_kb events_kb=$m_events_kb hwm_kb=$m_hwm_kb events=$EVENTS"
}

measure baseline '^ipvs-trace: tracing' --no-kube

# lib.sh's kube_apiserver_start, with time to parse 100 MB of JSON under TCG (it waits 20 s).
m_t0=$(uptime_cs)
LAB_KUBECONFIG=$LAB_TMP/kubeconfig
kube-apiserver --listen 127.0.0.1:0 --objects /lab/cluster.json \
    --write-kubeconfig "$LAB_KUBECONFIG" >"$LAB_TMP/kube-apiserver.log" 2>&1 &
apiserver_pid=$!
echo "$apiserver_pid" >>"$LAB_PIDS"
wait_for "$LAB_TMP/kube-apiserver.log" "listening on" 900 || {
    cat "$LAB_TMP/kube-apiserver.log"
    die "kube-apiserver did not start"
}
lab_log "kube-apiserver loaded the cluster in $(($(uptime_cs) - m_t0)) cs"
measure watch 'names synced' --kubeconfig "$LAB_KUBECONFIG"
echo "bench: memory mode=apiserver rss_kb=$(kb VmRSS "$apiserver_pid")"
# The API server's memory is the guest's, not the tool's: free it before the snapshot run.
kill "$apiserver_pid"
wait "$apiserver_pid" 2>/dev/null || true

measure snapshot '^ipvs-trace: tracing' --kube-snapshot /lab/cluster.json
