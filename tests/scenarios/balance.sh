#!/bin/sh
# balance: `ipvs-trace balance --check -o json` over five windows, one virtual service each,
# every count compared with the kernel's `ipvsadm -Ln --stats --exact` before and after:
#   rr       rr over 3 pods, 150 connections: balanced (exit 0)
#   wrr      wrr 3:2:1, 300 connections: balanced (exit 0)
#   reuse    conn_reuse_mode=0, one client reconnecting 20 times from one ip:port (19 reused
#            entries on one pod) beside 20 ordinary connections: deviates, cause `reused` (3)
#   weight0  rr over 3 pods, 30 connections, one pod set to weight 0, 30 more: deviates,
#            cause `weight_zero` on that pod (3)
#   added    rr over 2 pods, 30 connections, a third pod added, 30 more: deviates, cause
#            `backend_added` (3)
set -e
. /lab/lib.sh
node_setup

# balance_start NAME ARGS...: `ipvs-trace balance -o json --check ARGS` in the background,
# its output in the dumps NAME.out, NAME.stderr and NAME.status once stop_trace ends it (as
# trace_bg does for trace, `--btf` added where the kernel has no module BTF); returns once its
# window is open.
balance_start() {
    TRACE_NAME=$1
    shift
    [ -z "$LAB_IP_VS_BTF" ] || set -- --btf "$LAB_IP_VS_BTF" "$@"
    ipvs-trace balance -o json --check --tolerance 0.05 "$@" \
        >"$LAB_TMP/$TRACE_NAME.out" 2>"$LAB_TMP/$TRACE_NAME.stderr" &
    TRACE_PID=$!
    echo "$TRACE_PID" >>"$LAB_PIDS"
    wait_for "$LAB_TMP/$TRACE_NAME.stderr" "balance window open" 60 || {
        cat "$LAB_TMP/$TRACE_NAME.stderr"
        die "ipvs-trace balance did not open its window"
    }
    lab_log "ipvs-trace balance $TRACE_NAME window open"
}

# service VIP SCHEDULER WEIGHT...: a TCP service on VIP:80 over the
# pods 10.245.8.1, .2, ... with these weights.
service() {
    _vip=$1
    _sched=$2
    shift 2
    add_vip "$_vip"
    ipvsadm -A -t "$_vip:80" -s "$_sched"
    _i=1
    for _w in "$@"; do
        ipvsadm -a -t "$_vip:80" -r "10.245.8.$_i:8080" -m -w "$_w"
        _i=$((_i + 1))
    done
}

for i in 1 2 3; do
    mk_pod bpod$i 10.245.8.$i 8080
    mk_client bclient$i 198.51.100.4$i
done

# rr: exact.
service 172.31.0.70 rr 1 1 1
dump stats-before-rr ipvsadm -Ln --stats --exact
balance_start rr --vip 172.31.0.70:80
for i in 1 2 3; do
    client_start rr$i bclient$i --to 172.31.0.70:80 --count 50
done
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace
dump stats-rr ipvsadm -Ln --stats --exact

# wrr 3:2:1: exact.
service 172.31.0.71 wrr 3 2 1
dump stats-before-wrr ipvsadm -Ln --stats --exact
balance_start wrr --vip 172.31.0.71:80
for i in 1 2 3; do
    client_start wrr$i bclient$i --to 172.31.0.71:80 --count 100
done
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace
dump stats-wrr ipvsadm -Ln --stats --exact

# reuse: a client reconnecting from one ip:port hits its old entry (conn_reuse_mode=0, RST
# close so no TIME_WAIT blocks the port): no scheduling, the same pod every time.
echo 0 >/proc/sys/net/ipv4/vs/conn_reuse_mode
service 172.31.0.72 rr 1 1
dump stats-before-reuse ipvsadm -Ln --stats --exact
balance_start reuse --vip 172.31.0.72:80
# Port 30000 lies below the ephemeral range (32768-60999): with 40000, an rr or wrr connection
# of this client that happened to get port 40000 was still in TIME_WAIT, and every bind failed
# with EADDRINUSE (once in CI).
client_start reuse-fixed bclient1 --to 172.31.0.72:80 --count 20 --bind 198.51.100.41:30000 --rst --interval-ms 100
client_start reuse-other bclient2 --to 172.31.0.72:80 --count 20
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace
dump stats-reuse ipvsadm -Ln --stats --exact
echo 1 >/proc/sys/net/ipv4/vs/conn_reuse_mode

# weight0: a terminating endpoint, as kube-proxy marks it, half-way through the window. The
# pause lets the live tables (re-read every second) see the change while the window is open.
service 172.31.0.73 rr 1 1 1
dump stats-before-weight0 ipvsadm -Ln --stats --exact
balance_start weight0 --vip 172.31.0.73:80
client_start weight0-a bclient1 --to 172.31.0.73:80 --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
ipvsadm -e -t 172.31.0.73:80 -r 10.245.8.3:8080 -m -w 0
sleep 2
client_start weight0-b bclient2 --to 172.31.0.73:80 --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace
dump stats-weight0 ipvsadm -Ln --stats --exact

# added: a new endpoint (a scale-up) half-way through the window.
service 172.31.0.74 rr 1 1
dump stats-before-added ipvsadm -Ln --stats --exact
balance_start added --vip 172.31.0.74:80
client_start added-a bclient1 --to 172.31.0.74:80 --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
ipvsadm -a -t 172.31.0.74:80 -r 10.245.8.3:8080 -m -w 1
sleep 2
client_start added-b bclient2 --to 172.31.0.74:80 --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace
dump stats-added ipvsadm -Ln --stats --exact
dump_clients
