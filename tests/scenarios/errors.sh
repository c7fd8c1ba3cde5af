#!/bin/sh
# errors: the clear errors of ipvs-trace that can be provoked for real, and their way out.
#   noroot:   run as nobody -> names the privileges it needs (CAP_BPF, CAP_PERFMON, root)
#   unloaded: ip_vs not loaded -> says so and mentions --wait
#   wait:     `trace --wait` started before ip_vs is loaded -> traces once it is
#   btf:      `--btf` with a saved copy of the module's BTF -> traces
#   attach:   the mandatory kprobe cannot attach (the hidden test hook aims it at a symbol the
#             kernel does not have) -> names the kernel function
#   check:    `ipvs-trace check` on the intact node (compared with a golden file per kernel
#             release), and with --btf of a saved copy (ready; no module BTF: scenario builtin)
# Each failing run is bounded by `timeout` and dumped with its exit status; the tracing runs
# make real connections and dump the kernel's entries to compare with.
set -e
. /lab/lib.sh

# service NAME VIP COUNT: a one-pod rr service and COUNT connections to it from a client.
service() {
    add_vip "$2"
    ipvsadm -A -t "$2:80" -s rr
    mk_pod "pod-$1" 10.245.8.1 8080
    ipvsadm -a -t "$2:80" -r 10.245.8.1:8080 -m -w 1
    mk_client "cl-$1" 198.51.100.11
    client_start "$1" "cl-$1" --to "$2:80" --count "$3"
    client_wait || lab_log "some connections failed (see the client dumps)"
}

node_setup

dump release uname -r
# Where the kernel has no module BTF, the lab's pahole-made file stands in (see lib.sh).
# shellcheck disable=SC2086 # empty, or two words
BTF_ARGS=${LAB_IP_VS_BTF:+--btf $LAB_IP_VS_BTF}
dump check ipvs-trace check $BTF_ARGS
dump noroot su -s /bin/sh nobody -c 'timeout 20 ipvs-trace trace -o json'
dump attach timeout 20 ipvs-trace trace -o json $BTF_ARGS \
    --debug-kprobe-target ip_vs_conn_new=ip_vs_no_such_fn

node_teardown
/lab/unload-ipvs.sh || die "cannot unload ip_vs"
[ -d /sys/module/ip_vs ] && die "ip_vs is still loaded after /lab/unload-ipvs.sh"
mkdir -p "$LAB_TMP"
: >"$LAB_PIDS"
# The IPVS dataplane alone: an earlier scenario of the boot may have left nf_nat loaded, and
# with it every dataplane would be traced through nf_nat (docs/dataplanes.md).
dump unloaded timeout 20 ipvs-trace trace -o json --dataplane ipvs

trace_bg wait --wait --dataplane ipvs
sleep 1
kill -0 "$TRACE_PID" 2>/dev/null || die "trace --wait exited while ip_vs was not loaded"
grep -q '^ipvs-trace: tracing' "$LAB_TMP/wait.stderr" && die "trace --wait claims to trace without ip_vs"
/lab/load-ipvs.sh || die "cannot load ip_vs"
trace_ready 60
node_setup
service wait 172.31.0.50 5
dump_ipvs wait
stop_trace 5
dump_clients
node_teardown

node_setup
mkdir -p /tmp/saved-btf
cp /sys/kernel/btf/vmlinux /tmp/saved-btf/ || die "cannot save the BTF"
cp "${LAB_IP_VS_BTF:-/sys/kernel/btf/ip_vs}" /tmp/saved-btf/ip_vs || die "cannot save the BTF"
# /sys/kernel/btf as on a kernel built without module BTF: vmlinux only.
mount -t tmpfs lab-btf /sys/kernel/btf || die "cannot mount over /sys/kernel/btf"
cp /tmp/saved-btf/vmlinux /sys/kernel/btf/vmlinux
dump check-btf ipvs-trace check --btf /tmp/saved-btf/ip_vs
start_trace btf --btf /tmp/saved-btf/ip_vs
service btf 172.31.0.51 5
dump_ipvs btf
stop_trace 5
umount /sys/kernel/btf
dump_clients
