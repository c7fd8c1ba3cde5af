#!/bin/sh
# attach: the same decisions through each kind of hook, every probe hit. An rr service with two
# pods and one without endpoints; each round: client1 connects 3 times from one ip:port with a
# RST close (conn_reuse_mode=0: 1 new + 2 reused), client2 makes 4 ordinary connections, client3
# 2 connects that are refused (no_dest). Round `fentry`: `trace --attach fentry`; round `kprobe`:
# `--attach kprobe`, whatever IPVS_TRACE_ATTACH the boot set. Where the kernel has no
# trampoline for ip_vs (5.10: no module BTF; 6.1 refuses the attach), --attach fentry must fail
# at once naming why, and round `auto` takes its place: kprobes by fallback.
# Asserted: each round's tracing line names its hooks (fexit/fentry, kretprobe/kprobe), its
# events equal the kernel's entries and the connections made, 1 + 4 new, 2 reused, 2 no_dest;
# the trampolines hold ip_vs (its refcnt one higher per trampoline on 6.2+), the kprobes do not.
set -e
. /lab/lib.sh
node_setup
echo 0 >/proc/sys/net/ipv4/vs/conn_reuse_mode
echo 0 >/proc/sys/net/ipv4/icmp_ratelimit

VIP=172.31.0.50
EMPTY=172.31.0.51
add_vip $VIP
add_vip $EMPTY
ipvsadm -A -t $VIP:80 -s rr
ipvsadm -A -t $EMPTY:80 -s rr
for i in 1 2; do
    mk_pod pod$i 10.245.50.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.50.$i:8080 -m -w 1
done
mk_client client1 198.51.100.51
mk_client client2 198.51.100.52
mk_client client3 198.51.100.53
dump_attach

# round MODE PORT: one round of traffic traced by $TRACE_NAME (started with --attach MODE);
# client1 binds PORT and client3 PORT+1000, so each round's decisions are told apart from the
# other's. The dumps refcnt-MODE-* hold ip_vs's module reference count before and while the
# tracer is attached: a trampoline holds one on the module (since 6.2), a kprobe none.
round() {
    dump "refcnt-$1-attached" cat /sys/module/ip_vs/refcnt
    client_start "$1-reuse" client1 --to $VIP:80 --count 3 --bind "198.51.100.51:$2" --rst \
        --interval-ms 100
    client_start "$1-plain" client2 --to $VIP:80 --count 4
    client_wait || lab_log "some connections failed (see the client dumps)"
    client_start "$1-refused" client3 --to $EMPTY:80 --count 2 --bind "198.51.100.53:$(($2 + 1000))"
    client_wait && die "connections to a service without endpoints succeeded"
    dump_ipvs "$1"
    stop_trace 9
}

# Trampolines, where the kernel takes them; where not (no module BTF, or the kernel refuses the
# attach) --attach fentry fails at once naming why, and --attach auto falls back to kprobes.
dump refcnt-fentry-before cat /sys/module/ip_vs/refcnt
if trace_try fentry --attach fentry; then
    round fentry 30200
else
    dump fentry-refused cat "$LAB_TMP/fentry.stderr"
    dump refcnt-auto-before cat /sys/module/ip_vs/refcnt
    start_trace auto --attach auto
    round auto 30200
fi
dump refcnt-kprobe-before cat /sys/module/ip_vs/refcnt
start_trace kprobe --attach kprobe
round kprobe 30201
dump_clients
