#!/bin/sh
# reload: `ipvs-trace serve` outlives ip_vs being unloaded and loaded again (kube-proxy
# restarting, a mode switch, a node upgrade). One rr service over two pods, 6 connections; then
# the virtual service goes and ip_vs with its schedulers is unloaded (/lab/unload-ipvs.sh);
# serve must turn unready; ip_vs is loaded again, the service re-created, serve must turn ready
# by itself, and 9 connections are made. Then an unload and a reload within one of serve's
# polls (serve stopped with SIGSTOP meanwhile: the poll after SIGCONT finds another load of
# ip_vs in place of its own, which the sysfs inode tells; the module's code can be at the same
# address again, as it is on 6.12), 4 connections.
# Asserted: /healthz 200, then 503 and ipvs_trace_ready 0 while ip_vs is away, then 200 and 1;
# ipvs_trace_probe_reattachments_total 1 then 2; the connection counter equal to the kernel's
# Conns (ipvsadm -Ln --stats) before the unload, and its growth after each reload equal to the
# kernel's Conns of the reloaded module (its counters restart with it); nothing lost,
# unreadable or malformed over the three tracers; the unload warning said once per unload;
# SIGTERM ends serve with status 0 and the summary. serve runs with --attach kprobe: a
# trampoline would keep ip_vs from being unloaded at all.
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.90
METRICS=127.0.0.1:9809
add_vip $VIP
mk_pod rpod1 10.245.19.1 8080
mk_pod rpod2 10.245.19.2 8080
mk_client rclient 198.51.100.90

# rr_service: the virtual service as kube-proxy programs it (again, after a reload).
rr_service() {
    ipvsadm -A -t $VIP:80 -s rr
    ipvsadm -a -t $VIP:80 -r 10.245.19.1:8080 -m -w 1
    ipvsadm -a -t $VIP:80 -r 10.245.19.2:8080 -m -w 1
}

# healthz_until ok|unready TIMEOUT_SECONDS: until /healthz answers 200 (ok) or not (unready).
healthz_until() {
    _n=$(($2 * 10))
    while [ "$_n" -gt 0 ]; do
        if wget -q -O /dev/null "http://$METRICS/healthz" 2>/dev/null; then
            [ "$1" = ok ] && return 0
        else
            [ "$1" = unready ] && return 0
        fi
        usleep 100000
        _n=$((_n - 1))
    done
    return 1
}

# metric_until LINE TIMEOUT_SECONDS: until /metrics has the sample line LINE.
metric_until() {
    _n=$(($2 * 10))
    while [ "$_n" -gt 0 ]; do
        wget -q -O - "http://$METRICS/metrics" 2>/dev/null | grep -qx "$1" && return 0
        usleep 100000
        _n=$((_n - 1))
    done
    return 1
}

# module TAG: what identifies this load of ip_vs (its sysfs inode, which serve compares) and
# where its code is (which need not change from one load to the next).
module() {
    dump "module-$1" sh -c 'ls -id /sys/module/ip_vs; cat /sys/module/ip_vs/sections/.text'
}

rr_service
# Kprobes: a BPF trampoline on a module's function holds a reference to the module (6.2+), so
# with fentry/fexit ip_vs cannot be unloaded at all while serve runs (`attach` checks that).
serve_start serve --metrics-addr $METRICS --no-kube --attach kprobe
dump healthz-before wget -q -O - "http://$METRICS/healthz"
module before
client_start before rclient --to $VIP:80 --count 6
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs before
dump_stats before
sleep 2
dump metrics-before wget -q -O - "http://$METRICS/metrics"

/lab/unload-ipvs.sh || die "cannot unload ip_vs"
[ -d /sys/module/ip_vs ] && die "ip_vs is still loaded after /lab/unload-ipvs.sh"
lab_log "ip_vs unloaded"
healthz_until unready 10 || lab_log "serve still ready 10 s after ip_vs was unloaded"
# A few of serve's polls while ip_vs is away: it must wait, not re-attach to nothing.
sleep 3
dump healthz-unloaded wget -q -O - "http://$METRICS/healthz"
dump metrics-unloaded wget -q -O - "http://$METRICS/metrics"

/lab/load-ipvs.sh || die "cannot load ip_vs"
lab_log "ip_vs loaded again"
rr_service
healthz_until ok 60 || lab_log "serve not ready 60 s after ip_vs was loaded again"
lab_log "serve ready again"
dump healthz-reloaded wget -q -O - "http://$METRICS/healthz"
module reloaded
client_start reloaded rclient --to $VIP:80 --count 9
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs reloaded
dump_stats reloaded
sleep 2
dump metrics-reloaded wget -q -O - "http://$METRICS/metrics"

# Within one poll: serve never sees the module gone, only another load in its place.
kill -STOP "$SERVE_PID"
/lab/unload-ipvs.sh || die "cannot unload ip_vs"
/lab/load-ipvs.sh || die "cannot load ip_vs"
rr_service
kill -CONT "$SERVE_PID"
lab_log "ip_vs unloaded and loaded again while serve was stopped"
metric_until 'ipvs_trace_probe_reattachments_total 2' 60 ||
    lab_log "no second re-attachment 60 s after ip_vs was loaded again"
healthz_until ok 10 || lab_log "serve not ready after the second reload"
module fast
client_start fast rclient --to $VIP:80 --count 4
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
dump_clients
dump_stats
sleep 2
dump metrics wget -q -O - "http://$METRICS/metrics"

serve_stop serve
