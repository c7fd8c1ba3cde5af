# lab.sh: helpers for scenarios in the ipvs-trace VM lab (busybox sh), installed as /lab/lib.sh.
#
# A scenario models one Kubernetes node whose kube-proxy runs in IPVS mode:
#   - the node's root netns holds the IPVS virtual services; ClusterIP-style VIPs sit on the
#     `kube-ipvs0` dummy interface, node addresses (NodePort) on a dummy `eth0`;
#   - every pod and every client lives in its own netns behind a veth pair. The netns side is
#     `eth0` with a /32 address and a default route via 169.254.1.1, which is the root side's
#     address on every host veth (the way Calico wires pods): no subnets, no proxy ARP, and
#     the root netns routes each /32 to its veth.
# Everything a scenario creates is removed by node_teardown, installed as an EXIT trap by
# node_setup, so scenarios can run one after another in a single boot. Scenarios run with
# `set -e`; the helpers here are written to work under it (expected failures are tested with
# `if` or `||`, never left to `$?`).
#
# Output for the Rust assertions (tests/src/lib.rs parses it):
#   @@DUMP name@@
#   ...command output...
#   @@END name status=N@@

IP=/sbin/ip
LAB_TMP=/tmp/lab
# Processes started in the background by these helpers, one pid a line: teardown ends exactly
# these, never anything by name.
LAB_PIDS=$LAB_TMP/pids
GATEWAY=169.254.1.1
CLIENT_PIDS=
TRACE_PID=
# Split BTF of ip_vs made offline with pahole (tests/fixtures/ip_vs-<release>.btf), for kernels
# that ship none in /sys/kernel/btf; empty where the kernel has its own.
LAB_IP_VS_BTF=
if [ ! -e /sys/kernel/btf/ip_vs ] && [ -e "/lab/fixtures/ip_vs-$(uname -r).btf" ]; then
    LAB_IP_VS_BTF=/lab/fixtures/ip_vs-$(uname -r).btf
fi

# lab_log MESSAGE: a log line stamped with the guest's uptime in centiseconds.
lab_log() {
    echo "lab: [$(uptime_cs)] $*"
}

# die MESSAGE: fail the scenario (the EXIT trap still cleans up).
die() {
    echo "lab: FAIL: $*"
    exit 1
}

# node_setup: the kube-proxy IPVS node baseline; installs node_teardown as the EXIT trap.
node_setup() {
    mkdir -p "$LAB_TMP"
    : >"$LAB_PIDS"
    trap node_teardown EXIT
    # Kernel messages (e.g. IPVS's "no destination available") must not interleave with the
    # scenario's output on the console.
    dmesg -n 1
    [ -d /proc/sys/net/ipv4/vs ] || die "ip_vs is not loaded (run /lab/load-ipvs.sh)"
    echo 1 >/proc/sys/net/ipv4/ip_forward
    # kube-proxy's IPVS-mode sysctls: conntrack=1 keeps netfilter conntrack working for IPVS
    # connections (kube-proxy's SNAT rules need it); expire_nodest_conn=1 drops entries whose
    # real server was removed.
    echo 1 >/proc/sys/net/ipv4/vs/conntrack
    echo 1 >/proc/sys/net/ipv4/vs/expire_nodest_conn
    # kube-proxy leaves kube-ipvs0 down: the VIPs on it only need their local routes, which
    # the kernel installs for a down device too.
    $IP link add kube-ipvs0 type dummy || die "cannot create kube-ipvs0"
}

# node_teardown: remove everything node_setup and the other helpers created.
node_teardown() {
    # Best effort: remove whatever exists, whatever failed before (`set -e` is restored at the
    # end for scenarios that go on after a teardown).
    _errexit=
    case $- in *e*) _errexit=1 ;; esac
    set +e
    if [ -s "$LAB_PIDS" ]; then
        for _pid in $(cat "$LAB_PIDS"); do
            kill "$_pid" 2>/dev/null && wait "$_pid" 2>/dev/null
        done
    fi
    # IPVS keeps a deleted real server in its trash while entries still hold it, and the next
    # scenario's identical service takes it back with its counters zeroed as the estimator last
    # folded them (every 2 s, stopped at the delete): counts not folded yet come back as the
    # next scenario's. CI on 5e89d6a: names' last 5 connections, made just before its
    # teardown, were in snapshot's --stats (17 for 12). So the counters settle first.
    ipvs_settle_after "${IPVS_TRAFFIC_AT:-0}"
    node_reset
    rm -rf "$LAB_TMP"
    [ -z "$_errexit" ] || set -e
}

# node_reset: the node as the lab booted it, whoever left it otherwise (node_teardown, and
# run-all.sh after a scenario that died half-way): ip_vs loaded, /sys/kernel/btf not hidden,
# no virtual service, no netns, no kube-ipvs0 or eth0, default sysctls.
node_reset() {
    [ -d /sys/module/ip_vs ] || /lab/load-ipvs.sh
    # The errors scenario hides /sys/kernel/btf to stand in for a kernel without module BTF.
    if grep -q ' /sys/kernel/btf tmpfs ' /proc/mounts; then umount /sys/kernel/btf; fi
    ipvsadm -C
    netfilter_reset
    _left=$(ls /run/netns 2>/dev/null)
    if [ -n "$_left" ] || [ -e /sys/class/net/kube-ipvs0 ] || [ -e /sys/class/net/eth0 ]; then
        # One `ip -force -batch` (it goes on after an error) for every link and netns. A netns
        # dies asynchronously, and its veth with it: deleting the pair first frees the
        # interface name at once for the next scenario.
        {
            for _ns in $_left; do
                echo "link delete h-$_ns"
                echo "netns delete $_ns"
            done
            echo "link delete kube-ipvs0"
            echo "link delete eth0"
        } | $IP -force -batch - 2>/dev/null
    fi
    # Back to the kernel defaults a scenario may have changed.
    echo 1 >/proc/sys/net/ipv4/vs/conn_reuse_mode
    echo 1000 >/proc/sys/net/ipv4/icmp_ratelimit
    echo 0 >/proc/sys/net/ipv6/conf/all/forwarding
}

# add_vip IP: a ClusterIP / externalIP / LoadBalancer address, bound on kube-ipvs0.
add_vip() {
    $IP addr add "$1/32" dev kube-ipvs0 || die "cannot add VIP $1"
}

# add_node_ip IP: a node address (where NodePorts listen), on a dummy eth0 standing for the
# node's NIC (the guest has no real NIC).
add_node_ip() {
    if ! $IP link show eth0 >/dev/null 2>&1; then
        $IP link add eth0 type dummy || die "cannot create the node's eth0"
        $IP link set eth0 up
    fi
    $IP addr add "$1/32" dev eth0 || die "cannot add node address $1"
}

# _mk_netns NAME IP: a netns with eth0 = IP/32, wired to the root netns. Two `ip -batch`
# runs instead of eleven `ip` commands: each start of the dynamically linked `ip` costs about
# 0.2 s under TCG.
_mk_netns() {
    _ns=$1
    _ip=$2
    _host=h-$_ns
    [ ${#_host} -le 15 ] || die "netns name $_ns is too long for an interface name"
    $IP -batch - <<EOF || die "cannot create netns $_ns"
netns add $_ns
link add $_host type veth peer name eth0 netns $_ns
addr add $GATEWAY/32 dev $_host
link set $_host up
route add $_ip/32 dev $_host
EOF
    $IP -n "$_ns" -batch - <<EOF || die "cannot set up eth0 in netns $_ns"
link set lo up
addr add $_ip/32 dev eth0
link set eth0 up
route add $GATEWAY dev eth0 scope link
route add default via $GATEWAY dev eth0
EOF
}

# mk_pod NAME IP PORT[/udp]...: a backend pod serving each port (TCP unless /udp).
mk_pod() {
    _pod=$1
    _podip=$2
    shift 2
    _mk_netns "$_pod" "$_podip"
    _serve "$_pod" "$_podip" "$@"
}

# _serve POD LISTEN-ADDR PORT[/udp|/echo]...: in POD's netns, one `lab-net serve` per port on
# LISTEN-ADDR (`IP` or `[IP6]`), waiting until each listens (/echo: a TCP server that writes
# back what it reads, for `connect --exchanges`).
_serve() {
    _spod=$1
    _saddr=$2
    shift 2
    for _p in "$@"; do
        case $_p in
        */udp)
            _port=${_p%/udp}
            _udp=--udp
            ;;
        */echo)
            _port=${_p%/echo}
            _udp=--echo
            ;;
        *)
            _port=$_p
            _udp=
            ;;
        esac
        _log=$LAB_TMP/serve-$_spod-$_saddr-$_port$_udp.log
        # Not through in_ns: a function in the background is a subshell, and $! must be the
        # server itself (nsenter execs it) for node_teardown to end it.
        nsenter --net="/run/netns/$_spod" lab-net serve --listen "$_saddr:$_port" $_udp >"$_log" 2>&1 &
        echo $! >>"$LAB_PIDS"
        wait_for "$_log" "listening on" 10 || {
            cat "$_log"
            die "pod $_spod did not start serving $_p on $_saddr"
        }
    done
}

# mk_client NAME IP: a client netns.
mk_client() {
    _mk_netns "$1" "$2"
}

# IPv6 (dual-stack Services): the root side of every host veth also has the link-local
# GATEWAY6, the netns default route points at it, and the root netns routes each /128 to its
# veth; the IPv6 twin of the /32 wiring above. Every address is `nodad`: duplicate address
# detection would hold each one tentative (unusable) for about a second, and fe80::1 is
# meant to be on many links at once.
GATEWAY6=fe80::1

# add_vip6 IP6: an IPv6 ClusterIP, bound on kube-ipvs0 (as kube-proxy does for a dual-stack
# Service's second ClusterIP).
add_vip6() {
    _ipv6_forwarding
    $IP -6 addr add "$1/128" dev kube-ipvs0 nodad || die "cannot add IPv6 VIP $1"
}

# mk_pod6 NAME IP IP6 PORT[/udp]...: a dual-stack backend pod: mk_pod's pod with IP6/128 on
# its eth0 too, serving each port on both addresses.
mk_pod6() {
    _pod6=$1
    _pod4ip=$2
    _pod6ip=$3
    shift 3
    mk_pod "$_pod6" "$_pod4ip" "$@"
    _add_ipv6 "$_pod6" "$_pod6ip"
    _serve "$_pod6" "[$_pod6ip]" "$@"
}

# mk_client6 NAME IP IP6: a dual-stack client netns.
mk_client6() {
    _mk_netns "$1" "$2"
    _add_ipv6 "$1" "$3"
}

# _ipv6_forwarding: the root netns routes IPv6 between the veths (all.forwarding also sets the
# default for veths created later).
_ipv6_forwarding() {
    echo 1 >/proc/sys/net/ipv6/conf/all/forwarding
}

# _add_ipv6 NAME IP6: IP6/128 on the eth0 of netns NAME (made by _mk_netns), wired like IPv4.
_add_ipv6() {
    _ipv6_forwarding
    $IP -batch - <<EOF || die "cannot route $2 to netns $1"
addr add $GATEWAY6/64 dev h-$1 nodad
route add $2/128 dev h-$1
EOF
    # `::/0`, not `default`: the batch has no -6 to say which family `default` is.
    $IP -n "$1" -batch - <<EOF || die "cannot set up IPv6 on eth0 in netns $1"
addr add $2/128 dev eth0 nodad
route add ::/0 via $GATEWAY6 dev eth0
EOF
}

# in_ns NAME CMD...: run CMD inside netns NAME (exec'd: CMD keeps the pid). busybox nsenter
# rather than `ip netns exec`, which also remounts /sys and costs an `ip` start.
in_ns() {
    _ns=$1
    shift
    nsenter --net="/run/netns/$_ns" "$@"
}

# client_start TAG NETNS LAB-NET-CONNECT-ARGS...: start `lab-net connect` in NETNS in the
# background; its lines go to the dump `client-TAG` (see client_wait, dump_clients).
client_start() {
    _tag=$1
    _ns=$2
    shift 2
    nsenter --net="/run/netns/$_ns" lab-net connect "$@" \
        >"$LAB_TMP/client-$_tag.out" 2>"$LAB_TMP/client-$_tag.err" &
    CLIENT_PIDS="$CLIENT_PIDS $!"
}

# client_wait: wait for every started client; status 1 if any reported a failed connection.
client_wait() {
    _failed=0
    for _pid in $CLIENT_PIDS; do
        wait "$_pid" || _failed=1
    done
    CLIENT_PIDS=
    IPVS_TRAFFIC_AT=$(uptime_cs)
    [ "${TRACE_TO_CONSOLE:-0}" = 1 ] || lab_log "clients done"
    return $_failed
}

# dump_clients: one `client-TAG` dump per client run, plus its stderr if it wrote any.
dump_clients() {
    for _f in "$LAB_TMP"/client-*.out; do
        [ -e "$_f" ] || continue
        _tag=$(basename "$_f" .out)
        dump "$_tag" cat "$_f"
        [ -s "$LAB_TMP/$_tag.err" ] && dump "$_tag.stderr" cat "$LAB_TMP/$_tag.err"
    done
    return 0
}

# dump NAME CMD...: CMD's output (stdout and stderr) between markers, with its exit status.
dump() {
    _name=$1
    shift
    echo "@@DUMP $_name@@"
    _st=0
    "$@" >"$LAB_TMP/dump.out" 2>&1 || _st=$?
    cat "$LAB_TMP/dump.out"
    # The end marker must start a line even if the output did not end with a newline ($(...)
    # strips a trailing newline, so it is empty exactly when one is there).
    [ -n "$(tail -c 1 "$LAB_TMP/dump.out")" ] && echo
    echo "@@END $_name status=$_st@@"
    return 0
}

# dump_ipvs [TAG]: the kernel's own view, taken right after the traffic while closed TCP
# entries are still listed (TIME_WAIT 2 min, CLOSE 10 s): the dumps conns (connection table)
# and rules, named conns-TAG and rules-TAG when a TAG is given. See dump_stats for counters.
dump_ipvs() {
    _sfx=${1:+-$1}
    dump_conns "conns$_sfx"
    dump "rules$_sfx" ipvsadm -Ln
    IPVS_SNAPSHOT_AT=$(uptime_cs)
}

# conns_settled: `ipvsadm -Lnc` into $LAB_TMP/conns.settled, listed again (every 200 ms, 20
# times at most) until two listings in a row hold as many lines. Since 7.x IPVS resizes its
# connection table as it grows (ip_vs_rht), and a listing taken while it does can miss entries:
# on 7.2 one listed 18 of some 200 entries right after a burst (the entries were all there in a
# listing seconds later).
conns_settled() {
    _prev=-1
    _n=20
    while [ "$_n" -gt 0 ]; do
        ipvsadm -Lnc >"$LAB_TMP/conns.settled" 2>&1
        _count=$(wc -l <"$LAB_TMP/conns.settled")
        [ "$_count" -eq "$_prev" ] && return 0
        _prev=$_count
        usleep 200000
        _n=$((_n - 1))
    done
    lab_log "ipvsadm -Lnc still changing after 4 s: the last listing is dumped"
}

# dump_conns NAME: the dump NAME, `ipvsadm -Lnc` once settled (conns_settled).
dump_conns() {
    conns_settled
    dump "$1" cat "$LAB_TMP/conns.settled"
}

# dump_attach: the dump `attach-env`, "RELEASE MODE": the kernel release and the --attach mode
# the boot gives every ipvs-trace (IPVS_TRACE_ATTACH, auto when unset), from which the tests
# know the hook each probe gets.
dump_attach() {
    dump attach-env sh -c 'echo "$(uname -r) ${IPVS_TRACE_ATTACH:-auto}"'
}

# dump_stats [TAG]: the dump stats (stats-TAG), `ipvsadm -Ln --stats --exact`, once it is
# complete. IPVS counts per CPU and its estimator folds the counts into what ipvsadm reads
# every 2 s, so right after the traffic Conns lags behind (251 of 300 seen on 6.1): this waits
# until 3 s after dump_ipvs. Call it last, so the wait overlaps the scenario's other dumps.
dump_stats() {
    ipvs_settle
    dump "stats${1:+-$1}" ipvsadm -Ln --stats --exact
}

# ipvs_settle: wait until IPVS's counters include everything up to IPVS_SNAPSHOT_AT (3 s).
ipvs_settle() {
    ipvs_settle_after "${IPVS_SNAPSHOT_AT:-0}"
}

# ipvs_settle_after UPTIME_CS: wait until IPVS's counters include everything up to that time
# (3 s after it; no wait once that is past).
ipvs_settle_after() {
    _wait=$((300 - ($(uptime_cs) - $1)))
    [ "$_wait" -le 0 ] || usleep $((_wait * 10000))
}

# uptime_cs: the guest's uptime in centiseconds (builtins only: no program to start).
uptime_cs() {
    read -r _up _idle </proc/uptime
    _cs=${_up%.*}${_up#*.}
    # Leading zeros would make $((...)) read the number as octal.
    while [ ${#_cs} -gt 1 ] && [ "${_cs#0}" != "$_cs" ]; do _cs=${_cs#0}; done
    echo "$_cs"
}

# now_ns: the guest's monotonic clock in nanoseconds, which under -icount shift=0 counts
# executed instructions (the benchmarks' clock): /proc/timer_list's `now at N nsecs`.
# uptime_cs has centiseconds, 500 instructions a connection in a storm of 20,000, coarser than
# the costs measured; the two reads of a run (an awk each) add the same few instructions to
# every run. Without timer_list (CONFIG_TIMER_LIST off), the uptime, in nanoseconds.
now_ns() {
    if [ -r /proc/timer_list ]; then
        awk '/^now at/ { print $3; exit }' /proc/timer_list
    else
        echo "$(uptime_cs)0000000"
    fi
}

# quiesce [MAX_SECONDS]: waits (up to MAX_SECONDS of guest time, default 150: IPVS's and
# conntrack's TIME_WAIT last 120 s) until the connection entries earlier runs left behind are
# gone: no IPVS entry (/proc/net/ip_vs_conn) and at most 16 conntrack entries. A storm's
# entries expire 10 s after its RSTs, so without this the timers of one run's 20,000 entries
# fire during the next runs and bill them. Under -icount with sleep=off an idle guest's time
# passes at once, so the wait costs no wall time there; the benchmarks call it before each run.
quiesce() {
    _max=${1:-150}
    while [ "$_max" -gt 0 ]; do
        _ipvs=0
        [ ! -r /proc/net/ip_vs_conn ] || _ipvs=$(($(wc -l </proc/net/ip_vs_conn) - 1))
        _ct=0
        [ ! -r /proc/sys/net/netfilter/nf_conntrack_count ] ||
            _ct=$(cat /proc/sys/net/netfilter/nf_conntrack_count)
        [ "$_ipvs" -gt 0 ] || [ "$_ct" -gt 16 ] || return 0
        sleep 1
        _max=$((_max - 1))
    done
    lab_log "quiesce: still $_ipvs IPVS and $_ct conntrack entries"
}

# wait_for FILE TEXT TIMEOUT_SECONDS: until FILE contains TEXT (status 1 on timeout).
wait_for() {
    _n=$(($3 * 20))
    while [ "$_n" -gt 0 ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        usleep 50000
        _n=$((_n - 1))
    done
    return 1
}

# wait_lines FILE N TIMEOUT_SECONDS: until FILE has at least N lines (status 1 on timeout).
wait_lines() {
    _n=$(($3 * 20))
    while [ "$_n" -gt 0 ]; do
        [ "$(wc -l 2>/dev/null <"$1" || echo 0)" -ge "$2" ] && return 0
        usleep 50000
        _n=$((_n - 1))
    done
    return 1
}

# trace_bg NAME ARGS...: start `ipvs-trace trace -o $TRACE_FORMAT ARGS` (json by default) in
# the background; stdout to $LAB_TMP/NAME.out (or the console when TRACE_TO_CONSOLE=1),
# stderr to $LAB_TMP/NAME.stderr.
# On a kernel whose ip_vs has no BTF (Debian 5.10), the `--btf` of LAB_IP_VS_BTF is added, as an
# operator of such a node would (README: making split BTF with pahole).
trace_bg() {
    TRACE_NAME=$1
    shift
    case " $* " in
    *" --btf "*) ;;
    *) [ -z "$LAB_IP_VS_BTF" ] || set -- --btf "$LAB_IP_VS_BTF" "$@" ;;
    esac
    if [ "${TRACE_TO_CONSOLE:-0}" = 1 ]; then
        ipvs-trace trace -o "${TRACE_FORMAT:-json}" "$@" 2>"$LAB_TMP/$TRACE_NAME.stderr" &
    else
        ipvs-trace trace -o "${TRACE_FORMAT:-json}" "$@" \
            >"$LAB_TMP/$TRACE_NAME.out" 2>"$LAB_TMP/$TRACE_NAME.stderr" &
    fi
    TRACE_PID=$!
    echo "$TRACE_PID" >>"$LAB_PIDS"
}

# trace_ready TIMEOUT_SECONDS: until the tracer prints its `ipvs-trace: tracing` line; fails
# the scenario, showing the tracer's stderr, if it exits first or the line does not come.
trace_ready() {
    _trace_started "$1" && return 0
    case $? in
    1)
        echo "lab: ipvs-trace exited with status $_trace_exit before tracing; its stderr:"
        cat "$LAB_TMP/$TRACE_NAME.stderr"
        ;;
    *)
        echo "lab: no 'ipvs-trace: tracing' line after $1 s; stderr so far:"
        cat "$LAB_TMP/$TRACE_NAME.stderr"
        ;;
    esac
    die "ipvs-trace did not start"
}

# _trace_started TIMEOUT_SECONDS: 0 once the tracer prints its `ipvs-trace: tracing` line, 1 if
# it exits first (its status in _trace_exit), 2 if neither happens in time.
_trace_started() {
    _n=$(($1 * 20))
    while [ "$_n" -gt 0 ]; do
        grep -q '^ipvs-trace: tracing' "$LAB_TMP/$TRACE_NAME.stderr" 2>/dev/null && return 0
        if ! kill -0 "$TRACE_PID" 2>/dev/null; then
            _trace_exit=0
            wait "$TRACE_PID" || _trace_exit=$?
            return 1
        fi
        usleep 50000
        _n=$((_n - 1))
    done
    return 2
}

# trace_try NAME ARGS...: trace_bg, then wait until it is tracing (status 0) or has exited
# (status 1, its stderr in $LAB_TMP/NAME.stderr): for a start that may fail by design.
trace_try() {
    trace_bg "$@"
    _trace_started 60 && return 0
    [ $? -eq 1 ] || die "ipvs-trace $TRACE_NAME neither traced nor exited in 60 s"
    return 1
}

# start_trace NAME ARGS...: trace_bg, then wait until it is tracing.
start_trace() {
    trace_bg "$@"
    trace_ready 60
    if [ "${TRACE_TO_CONSOLE:-0}" = 1 ]; then
        cat "$LAB_TMP/$TRACE_NAME.stderr"
    else
        lab_log "ipvs-trace $TRACE_NAME is tracing"
    fi
}

# stop_trace [EXPECTED_LINES]: optionally wait (up to 20 s) until the tracer has written that
# many lines, then SIGINT it, wait for its summary, and dump NAME.out (stdout), NAME.stderr and
# NAME.status (its exit status).
stop_trace() {
    if [ -n "${1:-}" ] && [ "${TRACE_TO_CONSOLE:-0}" != 1 ]; then
        wait_lines "$LAB_TMP/$TRACE_NAME.out" "$1" 20 ||
            lab_log "only $(wc -l <"$LAB_TMP/$TRACE_NAME.out") of $1 trace lines after 20 s"
    fi
    # It may have exited already (its status and stderr tell why).
    kill -INT "$TRACE_PID" 2>/dev/null || true
    # A tracer that ignores SIGINT must not hang the whole boot: 20 s, then SIGKILL.
    _n=400
    while [ "$_n" -gt 0 ] && kill -0 "$TRACE_PID" 2>/dev/null; do
        usleep 50000
        _n=$((_n - 1))
    done
    if kill -0 "$TRACE_PID" 2>/dev/null; then
        lab_log "ipvs-trace still running 20 s after SIGINT: killing it"
        kill -KILL "$TRACE_PID"
    fi
    # Not `_st`: dump() sets that one, and the two dumps before the status would reset it.
    _trace_st=0
    wait "$TRACE_PID" || _trace_st=$?
    if [ "${TRACE_TO_CONSOLE:-0}" = 1 ]; then
        # For a person: the summary (what followed the tracing line), and a failure if any.
        # (The names-synced line was shown when it came.)
        awk 'shown && !/^ipvs-trace: kubernetes names synced/; /^ipvs-trace: tracing/ { shown = 1 }' \
            "$LAB_TMP/$TRACE_NAME.stderr"
        [ "$_trace_st" -eq 0 ] || lab_log "ipvs-trace exited with status $_trace_st"
    else
        dump "$TRACE_NAME.out" cat "$LAB_TMP/$TRACE_NAME.out"
        dump "$TRACE_NAME.stderr" cat "$LAB_TMP/$TRACE_NAME.stderr"
        dump "$TRACE_NAME.status" echo "$_trace_st"
        lab_log "ipvs-trace $TRACE_NAME stopped"
    fi
    TRACE_PID=
}

# trace_wait_stderr TEXT TIMEOUT_SECONDS: until the running tracer's stderr contains TEXT
# (e.g. the `kubernetes names synced` line); fails the scenario, showing that stderr, if not.
trace_wait_stderr() {
    wait_for "$LAB_TMP/$TRACE_NAME.stderr" "$1" "$2" && return 0
    echo "lab: no '$1' from ipvs-trace after $2 s; its stderr:"
    cat "$LAB_TMP/$TRACE_NAME.stderr"
    die "ipvs-trace did not say '$1'"
}

# The seed cluster (DESIGN.md), as tests/fixtures/seed-snapshot.json describes it: node
# cn-beijing.10.245.96.43, Service ratel/vpaas-demo-prod (type LoadBalancer) on its ClusterIP,
# its ingress IP and the node's NodePorts, ports http 80->8080 (nodePort 32380) and grpc
# 50091->50091 (nodePort 31502), three pods.
SEED_CLUSTER_IP=172.31.42.227
SEED_EXTERNAL_IP=10.245.11.252
SEED_NODE_IP=10.245.96.43
SEED_POD_IPS="10.245.112.32 10.245.112.47 10.245.113.15"

# seed_node: the seed node as kube-proxy (IPVS mode, rr, Masq) programs it: the three pods
# serving both ports, one virtual service per address and port, and two clients: the pod
# ratel/vpaas-demo-client-... (netns client-pod, 10.245.97.12) and one outside the cluster
# (netns outside, 198.51.100.7).
seed_node() {
    add_vip $SEED_CLUSTER_IP
    add_vip $SEED_EXTERNAL_IP
    add_node_ip $SEED_NODE_IP
    mk_pod dgzsm 10.245.112.32 8080 50091
    mk_pod x7k2p 10.245.112.47 8080 50091
    mk_pod q9wfn 10.245.113.15 8080 50091
    for _vs in $SEED_CLUSTER_IP:80:8080 $SEED_EXTERNAL_IP:80:8080 $SEED_NODE_IP:32380:8080 \
        $SEED_CLUSTER_IP:50091:50091 $SEED_EXTERNAL_IP:50091:50091 $SEED_NODE_IP:31502:50091; do
        _vip=${_vs%:*}
        _port=${_vs##*:}
        ipvsadm -A -t "$_vip" -s rr
        for _pod in $SEED_POD_IPS; do
            ipvsadm -a -t "$_vip" -r "$_pod:$_port" -m -w 1
        done
    done
    mk_client client-pod 10.245.97.12
    mk_client outside 198.51.100.7
}

# seed_node_kp MODE: the seed node with kube-proxy in MODE (nftables or iptables) instead of
# IPVS: the three pods serving both ports, the Service's two ports on its ClusterIP, ingress IP
# and NodePorts (kp_service), and seed_node's two clients plus a second one outside the
# cluster (netns outside2, 198.51.100.8).
seed_node_kp() {
    kp_setup "$1" $SEED_NODE_IP
    add_node_ip $SEED_NODE_IP
    mk_pod dgzsm 10.245.112.32 8080 50091
    mk_pod x7k2p 10.245.112.47 8080 50091
    mk_pod q9wfn 10.245.113.15 8080 50091
    _http=
    _grpc=
    for _pod in $SEED_POD_IPS; do
        _http="$_http $_pod:8080"
        _grpc="$_grpc $_pod:50091"
    done
    # shellcheck disable=SC2086 # one endpoint per word
    kp_service "$1" --lb $SEED_EXTERNAL_IP --nodeport 32380 ratel/vpaas-demo-prod:http tcp \
        $SEED_CLUSTER_IP:80 $_http
    # shellcheck disable=SC2086 # one endpoint per word
    kp_service "$1" --lb $SEED_EXTERNAL_IP --nodeport 31502 ratel/vpaas-demo-prod:grpc tcp \
        $SEED_CLUSTER_IP:50091 $_grpc
    mk_client client-pod 10.245.97.12
    mk_client outside 198.51.100.7
    mk_client outside2 198.51.100.8
}

# kp_seed_scenario MODE: the scenario of nftables.sh and iptables.sh, kube-proxy in MODE making
# the decision (seed_node_kp), names from the lab's API server serving the seed. While `trace
# --kubeconfig` runs:
#   balanced  `balance --check` on the http ClusterIP over 300 connections to it (100 from the
#             client pod, 200 from outside the cluster, masqueraded) and 6 to the http NodePort
#             from outside; conntrack dumped after them (conntrack-balanced);
#   removed   a second window: 30 connections, pod dgzsm's endpoint leaves (its EndpointSlice
#             turns terminating on the API server and kube-proxy's rules drop it from both
#             ports: kp_remove_endpoint), 150 more; conntrack dumped again (conntrack-removed).
#             Against equal shares that is some 10 : 85 : 85, far past chance (chi-square
#             above 40 on 2 degrees of freedom); 60 and 60 were not always (p 0.06 once).
# `rules -o json` dumped before the traffic (rules.json) and after the removal
# (rules-removed.json); the ruleset itself last (dump_netfilter).
kp_seed_scenario() {
    seed_node_kp "$1"
    kube_apiserver_start /lab/fixtures/seed-snapshot.json
    dump_rules_json rules.json --kubeconfig "$LAB_KUBECONFIG"

    start_trace trace --kubeconfig "$LAB_KUBECONFIG"
    trace_wait_stderr "kubernetes names synced" 60
    balance_bg balanced --kubeconfig "$LAB_KUBECONFIG" --vip $SEED_CLUSTER_IP:80
    client_start pod client-pod --to $SEED_CLUSTER_IP:80 --count 100
    client_start outside outside --to $SEED_CLUSTER_IP:80 --count 100
    client_start outside2 outside2 --to $SEED_CLUSTER_IP:80 --count 100
    client_start nodeport outside --to $SEED_NODE_IP:32380 --count 6
    client_wait || lab_log "some connections failed (see the client dumps)"
    dump_conntrack conntrack-balanced
    balance_stop balanced

    balance_bg removed --kubeconfig "$LAB_KUBECONFIG" --vip $SEED_CLUSTER_IP:80
    client_start before client-pod --to $SEED_CLUSTER_IP:80 --count 30
    client_wait || lab_log "some connections failed (see the client dumps)"
    kube_apply /lab/fixtures/seed-terminating.json
    kp_remove_endpoint "$1" ratel/vpaas-demo-prod:http tcp 10.245.112.32:8080
    kp_remove_endpoint "$1" ratel/vpaas-demo-prod:grpc tcp 10.245.112.32:50091
    # The live tables are read again every second: the window sees the change first.
    sleep 2
    client_start after outside --to $SEED_CLUSTER_IP:80 --count 150
    client_wait || lab_log "some connections failed (see the client dumps)"
    dump_conntrack conntrack-removed
    balance_stop removed
    dump_rules_json rules-removed.json --kubeconfig "$LAB_KUBECONFIG"

    stop_trace 486
    dump_clients
    dump_netfilter
}

# kube_apiserver_start FILE...: the in-repo API server on loopback serving the objects of the
# FILEs (`kubectl get -o json` output); sets KUBE_API (ip:port) and LAB_KUBECONFIG (a
# kubeconfig for it).
kube_apiserver_start() {
    _objects=
    for _f in "$@"; do _objects="$_objects --objects $_f"; done
    LAB_KUBECONFIG=$LAB_TMP/kubeconfig
    # shellcheck disable=SC2086 # one --objects FILE pair per word
    kube-apiserver --listen 127.0.0.1:0 $_objects --write-kubeconfig "$LAB_KUBECONFIG" \
        >"$LAB_TMP/kube-apiserver.log" 2>&1 &
    echo $! >>"$LAB_PIDS"
    wait_for "$LAB_TMP/kube-apiserver.log" "listening on" 20 || {
        cat "$LAB_TMP/kube-apiserver.log"
        die "kube-apiserver did not start"
    }
    KUBE_API=$(sed -n 's/^kube-apiserver: listening on \([^ ]*\) .*/\1/p' "$LAB_TMP/kube-apiserver.log")
    [ -n "$KUBE_API" ] || die "no address in kube-apiserver's log"
}

# kube_apply FILE: create or replace the object(s) in FILE on the lab's API server, as
# `kubectl apply` would (watchers get ADDED or MODIFIED).
kube_apply() {
    wget -q -O /dev/null --post-file "$1" "http://$KUBE_API/lab/apply" ||
        die "kube-apiserver refused $1"
}

# kube_delete PLURAL NAMESPACE NAME: delete the object from the lab's API server, as `kubectl
# delete` would (watchers get DELETED). busybox wget sends no DELETE: the request by hand.
kube_delete() {
    _host=${KUBE_API%:*}
    _port=${KUBE_API##*:}
    # busybox nc ends when its input does: the input stays open until the answer is in.
    _reply=$({
        printf 'DELETE /lab/objects/%s/%s/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' \
            "$1" "$2" "$3" "$KUBE_API"
        sleep 1
    } | nc "$_host" "$_port" | head -n 1)
    case $_reply in
    "HTTP/1.1 2"*) ;;
    *) die "kube-apiserver refused to delete $1 $2/$3: $_reply" ;;
    esac
}

# serve_start NAME ARGS...: `ipvs-trace serve ARGS` in the background (plus --btf where the
# kernel has no module BTF), stdout to $LAB_TMP/NAME.out, stderr to $LAB_TMP/NAME.stderr;
# returns once it is tracing. Sets SERVE_PID.
serve_start() {
    _sname=$1
    shift
    [ -z "$LAB_IP_VS_BTF" ] || set -- "$@" --btf "$LAB_IP_VS_BTF"
    ipvs-trace serve "$@" >"$LAB_TMP/$_sname.out" 2>"$LAB_TMP/$_sname.stderr" &
    SERVE_PID=$!
    echo "$SERVE_PID" >>"$LAB_PIDS"
    if ! wait_for "$LAB_TMP/$_sname.stderr" '^ipvs-trace: tracing' 60; then
        cat "$LAB_TMP/$_sname.stderr"
        die "ipvs-trace serve ($_sname) did not start"
    fi
    lab_log "ipvs-trace serve ($_sname) is tracing"
}

# serve_stop NAME [SIGNAL]: stop the serve of serve_start (SIGTERM unless told) and dump its
# exit status, stdout and stderr as NAME.status, NAME.out, NAME.stderr. One that ignores the
# signal is killed after 20 s (and the status says so).
serve_stop() {
    kill "-${2:-TERM}" "$SERVE_PID"
    _n=400
    while [ "$_n" -gt 0 ] && kill -0 "$SERVE_PID" 2>/dev/null; do
        usleep 50000
        _n=$((_n - 1))
    done
    if kill -0 "$SERVE_PID" 2>/dev/null; then
        lab_log "ipvs-trace serve ($1) still running 20 s after SIG${2:-TERM}: killing it"
        kill -KILL "$SERVE_PID"
    fi
    _serve_st=0
    wait "$SERVE_PID" || _serve_st=$?
    dump "$1.status" echo "$_serve_st"
    dump "$1.out" cat "$LAB_TMP/$1.out"
    dump "$1.stderr" cat "$LAB_TMP/$1.stderr"
}

# ---- kube-proxy's nftables and iptables modes ----
#
# The same node, with kube-proxy in nftables or iptables mode instead: no VIP on kube-ipvs0
# (both modes DNAT in prerouting, before routing, so a ClusterIP needs no address), the choice
# of endpoint made at random by a rule, as kube-proxy writes them (read from its
# pkg/proxy/nftables and pkg/proxy/iptables sources and their tests' expected rulesets):
#   nftables  `table ip kube-proxy`: the `services` chain looks the destination up in the
#             `service-ips` map (`service-nodeports` for NodePorts on @nodeport-ips), which
#             goes to `service-HASH-ns/name/proto/port`; that one marks outside traffic for
#             masquerade and picks an endpoint with `numgen random mod N vmap`, each endpoint
#             chain `endpoint-HASH-ns/name/proto/port__ip/port` ending in `dnat to`.
#   iptables  KUBE-SERVICES -> KUBE-SVC-HASH, whose rules pick an endpoint with `-m statistic
#             --mode random --probability 1/N, 1/(N-1), ...` (the last unconditional) ->
#             KUBE-SEP-HASH with its DNAT; KUBE-MARK-MASQ / KUBE-POSTROUTING masquerade;
#             written with iptables-restore (iptables-nft: Debian's default).
# Each service is remembered in $LAB_TMP/kp/ so that a change (kp_remove_endpoint) rewrites it
# as kube-proxy's next sync would. node_reset removes the rules (`nft flush ruleset` covers the
# iptables-nft tables too).

# --cluster-cidr: traffic from outside it to a ClusterIP is masqueraded ("detect-local").
KP_CLUSTER_CIDR=10.245.0.0/16
# The mark kube-proxy's masquerade rules set and test (--masquerade-bit 14).
KP_MASQ_MARK=0x4000
# Set while the node has netfilter rules of a scenario: node_reset removes them.
KP_MARKER=/run/lab-netfilter

# kp_setup MODE [NODE-IP...]: kube-proxy's base rules for MODE (nftables or iptables), once
# per scenario; NODE-IPs are where NodePorts listen (kube-proxy's nodePortAddresses). Loads
# the netfilter modules, and empties the conntrack table so that `conntrack -L` lists only
# this scenario's connections.
kp_setup() {
    _mode=$1
    shift
    /lab/load-netfilter.sh || die "cannot load the netfilter modules"
    touch "$KP_MARKER"
    mkdir -p "$LAB_TMP/kp"
    conntrack -F 2>/dev/null || true
    case $_mode in
    nftables) _kp_nft_base "$@" ;;
    iptables) _kp_ipt_base ;;
    *) die "kp_setup: no kube-proxy mode $_mode" ;;
    esac
}

# kp_service MODE [--lb IP]... [--nodeport PORT] NS/NAME:PORT PROTO CLUSTER-IP:PORT ENDPOINT...:
# program one Service port (ServicePortName, lowercase protocol, its ClusterIP and port, each
# endpoint IP:PORT) as kube-proxy in MODE does, with its LoadBalancer ingress IPs and NodePort
# (externalTrafficPolicy Cluster).
kp_service() {
    _mode=$1
    shift
    _lbs=
    _nodeport=
    while :; do
        case $1 in
        --lb)
            _lbs="$_lbs $2"
            shift 2
            ;;
        --nodeport)
            _nodeport=$2
            shift 2
            ;;
        *) break ;;
        esac
    done
    [ $# -ge 4 ] || die "kp_service: needs NS/NAME:PORT PROTO CLUSTER-IP:PORT ENDPOINT..."
    _svcport=$1
    _state=$(_kp_state "$_mode" "$1" "$2")
    _endpoints=$(shift 3 && echo "$*")
    {
        echo "KP_SVC='$1'"
        echo "KP_PROTO='$2'"
        echo "KP_CLUSTER='$3'"
        echo "KP_LB='${_lbs# }'"
        echo "KP_NODEPORT='$_nodeport'"
        shift 3
        echo "KP_ENDPOINTS='$*'"
    } >"$_state"
    case $_mode in
    nftables) _kp_nft_apply "$_state" new ;;
    iptables) _kp_ipt_apply ;;
    esac
    lab_log "kube-proxy ($_mode): $_svcport -> $_endpoints"
}

# kp_remove_endpoint MODE NS/NAME:PORT PROTO ENDPOINT: the endpoint leaves the Service (pod
# gone or not ready), rewritten as kube-proxy's next sync does: nftables flushes the service
# chain and writes it again with the smaller numgen vmap, flushes the endpoint's chain and
# deletes it a sync later (kube-proxy waits at least a second: older kernels notice a chain is
# unreferenced only a moment after); iptables restores the KUBE-SVC chain with the new
# probabilities and deletes the KUBE-SEP chain (-X) in the same restore.
kp_remove_endpoint() {
    _state=$(_kp_state "$1" "$2" "$3")
    [ -e "$_state" ] || die "kp_remove_endpoint: no $1 service $2 $3"
    _kp_names "$_state"
    _old=$KP_ENDPOINTS
    _left=
    for _ep in $_old; do
        [ "$_ep" = "$4" ] || _left="$_left $_ep"
    done
    [ "$_left" != " $_old" ] || die "kp_remove_endpoint: $4 is not an endpoint of $2"
    sed -i "s|^KP_ENDPOINTS=.*|KP_ENDPOINTS='${_left# }'|" "$_state"
    case $1 in
    nftables)
        _kp_nft_apply "$_state" changed "$(_kp_nft_endpoint_chain "$_state" "$4")"
        usleep 1100000
        nft delete chain ip kube-proxy "$(_kp_nft_endpoint_chain "$_state" "$4")" ||
            die "cannot delete the stale endpoint chain of $4"
        ;;
    iptables) _kp_ipt_apply "$(_kp_ipt_sep_chain "$_state" "$4")" ;;
    esac
    lab_log "kube-proxy ($1): $2 lost $4"
}

# kp_hash CHARS TEXT: the first CHARS (a multiple of 8) characters of base32(SHA-256(TEXT)),
# which kube-proxy puts in its chain names (8 in nftables mode, 16 in iptables mode). Every
# 10 hex digits (40 bits, exact in awk's doubles) make 8 base32 characters.
kp_hash() {
    printf %s "$2" | sha256sum | awk -v n="$1" '
        BEGIN { b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" }
        {
            out = ""
            for (o = 1; length(out) < n; o += 10) {
                v = 0
                for (i = o; i < o + 10; i++) v = v * 16 + index("0123456789abcdef", substr($1, i, 1)) - 1
                s = ""
                for (j = 0; j < 8; j++) { s = substr(b32, v % 32 + 1, 1) s; v = int(v / 32) }
                out = out s
            }
            print substr(out, 1, n)
        }'
}

# balance_bg NAME ARGS...: `ipvs-trace balance -o json --check ARGS` in the background (with
# --btf where the kernel needs it), beside a trace of trace_bg; returns once its window is
# open. balance_stop NAME ends it.
balance_bg() {
    _bname=$1
    shift
    [ -z "$LAB_IP_VS_BTF" ] || set -- --btf "$LAB_IP_VS_BTF" "$@"
    ipvs-trace balance -o json --check "$@" >"$LAB_TMP/$_bname.out" 2>"$LAB_TMP/$_bname.stderr" &
    echo $! >"$LAB_TMP/$_bname.pid"
    echo $! >>"$LAB_PIDS"
    wait_for "$LAB_TMP/$_bname.stderr" "balance window open" 60 || {
        cat "$LAB_TMP/$_bname.stderr"
        die "ipvs-trace balance $_bname did not open its window"
    }
    lab_log "ipvs-trace balance $_bname window open"
}

# balance_stop NAME: stop_trace for the balance of balance_bg NAME (its dumps NAME.out,
# NAME.stderr, NAME.status), leaving a trace of trace_bg running.
balance_stop() {
    _trace_name=$TRACE_NAME
    _trace_pid=$TRACE_PID
    TRACE_NAME=$1
    TRACE_PID=$(cat "$LAB_TMP/$1.pid")
    stop_trace
    TRACE_NAME=$_trace_name
    TRACE_PID=$_trace_pid
}

# dump_conntrack NAME: the dump NAME, the kernel's conntrack table (`conntrack -L -o extended`,
# IPv4): for each DNATed connection, original destination = the VIP, reply source = the
# endpoint. stdout only: the tool's count line on stderr could land inside the listing.
dump_conntrack() {
    dump "$1" sh -c 'conntrack -L -f ipv4 -o extended 2>/dev/null'
}

# dump_rules_json NAME ARGS...: `ipvs-trace rules -o json ARGS`, its stdout (one JSON document)
# in the dump NAME, its stderr in NAME.stderr.
dump_rules_json() {
    _rname=$1
    shift
    dump "$_rname" sh -c 'ipvs-trace rules -o json "$@" 2>"$0"' "$LAB_TMP/$_rname.stderr" "$@"
    dump "$_rname.stderr" cat "$LAB_TMP/$_rname.stderr"
}

# dump_netfilter: the rules as the kernel holds them, for a person reading a failure: the
# dumps `nft-ruleset` and `iptables-save`.
dump_netfilter() {
    dump nft-ruleset nft list ruleset
    dump iptables-save iptables-save
}

# netfilter_reset: remove every table a scenario left (node_reset calls it).
netfilter_reset() {
    [ -e "$KP_MARKER" ] || return 0
    nft flush ruleset
    if [ -d /sys/module/ip_tables ]; then
        for _table in nat filter; do
            iptables-legacy -t "$_table" -F
            iptables-legacy -t "$_table" -X
        done
    fi
    rm -f "$KP_MARKER"
}

# _kp_state MODE NS/NAME:PORT PROTO: the file that remembers that Service port.
_kp_state() {
    echo "$LAB_TMP/kp/$1-$(echo "$2-$3" | tr '/:' '__')"
}

# _kp_nft_base [NODE-IP...]: `table ip kube-proxy` as the proxier's setupNFTables leaves it
# before any Service: its sets and maps, base chains on the hooks at kube-proxy's priorities
# (dstnat -100, srcnat 100, filter before DNAT at -110 and after it at 0), the
# masquerade and dispatch chains. No cluster-ips-check drop for a service CIDR: the lab's
# ClusterIPs share 172.31/16 with the IPVS scenarios' VIPs, which a half-migrated node still
# serves.
_kp_nft_base() {
    {
        cat <<'NFT'
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
NFT
        for _node in "$@"; do
            echo "add element ip kube-proxy nodeport-ips { $_node }"
        done
    } | nft -f - || die "nft refused kube-proxy's base table"
}

# _kp_names FILE: from the state FILE, sets _ns _name _port (ServicePortName parts), _cip
# _cport (ClusterIP and port) and _kp_proto.
_kp_names() {
    # shellcheck disable=SC1090 # a state file written by kp_service
    . "$1"
    _ns=${KP_SVC%%/*}
    _name=${KP_SVC#*/}
    _port=${_name#*:}
    _name=${_name%%:*}
    _cip=${KP_CLUSTER%:*}
    _cport=${KP_CLUSTER##*:}
    _kp_proto=$KP_PROTO
}

# _kp_nft_endpoint_chain FILE ENDPOINT: the endpoint chain's name (servicePortEndpointChainNameBase).
_kp_nft_endpoint_chain() {
    _kp_names "$1"
    _base="$_ns/$_name/$_kp_proto/${_port}__${2%:*}/${2##*:}"
    echo "endpoint-$(kp_hash 8 "$_base")-$_base"
}

# _kp_nft_apply FILE new|changed [STALE-CHAIN]: one nft transaction for the Service port in
# FILE, as a sync writes it: its chains (added if new, flushed, filled) and, when new, its map
# elements; a STALE-CHAIN (a removed endpoint's) is flushed in the same transaction.
_kp_nft_apply() {
    _kp_names "$1"
    _base="$_ns/$_name/$_kp_proto/$_port"
    _hash=$(kp_hash 8 "$_base")
    _svc=service-$_hash-$_base
    _ext=external-$_hash-$_base
    {
        echo "add chain ip kube-proxy $_svc"
        echo "flush chain ip kube-proxy $_svc"
        echo "add rule ip kube-proxy $_svc ip daddr $_cip ip saddr != $KP_CLUSTER_CIDR jump mark-for-masquerade"
        _vmap=
        _i=0
        for _ep in $KP_ENDPOINTS; do
            _chain=$(_kp_nft_endpoint_chain "$1" "$_ep")
            echo "add chain ip kube-proxy $_chain"
            echo "flush chain ip kube-proxy $_chain"
            echo "add rule ip kube-proxy $_chain ip saddr ${_ep%:*} jump mark-for-masquerade"
            echo "add rule ip kube-proxy $_chain meta l4proto $_kp_proto dnat to $_ep"
            _vmap="$_vmap${_vmap:+ , }$_i : goto $_chain"
            _i=$((_i + 1))
        done
        echo "add rule ip kube-proxy $_svc numgen random mod $_i vmap { $_vmap }"
        if [ -n "$KP_LB$KP_NODEPORT" ]; then
            echo "add chain ip kube-proxy $_ext"
            echo "flush chain ip kube-proxy $_ext"
            echo "add rule ip kube-proxy $_ext jump mark-for-masquerade"
            echo "add rule ip kube-proxy $_ext goto $_svc"
        fi
        [ -z "${3:-}" ] || echo "flush chain ip kube-proxy $3"
        if [ "$2" = new ]; then
            echo "add element ip kube-proxy cluster-ips { $_cip }"
            echo "add element ip kube-proxy service-ips { $_cip . $_kp_proto . $_cport : goto $_svc }"
            for _lb in $KP_LB; do
                echo "add element ip kube-proxy service-ips { $_lb . $_kp_proto . $_cport : goto $_ext }"
            done
            [ -z "$KP_NODEPORT" ] ||
                echo "add element ip kube-proxy service-nodeports { $_kp_proto . $KP_NODEPORT : goto $_ext }"
        fi
    } | nft -f - || die "nft refused the rules of $KP_SVC"
}

# _kp_ipt_base: the jumps from the built-in chains into kube-proxy's (its iptablesJumpChains
# and the kubelet's KUBE-FIREWALL), made once as kube-proxy's first sync does.
_kp_ipt_base() {
    iptables-restore --noflush <<'IPT' || die "iptables-restore refused kube-proxy's jump rules"
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
IPT
}

# _kp_ipt_svc_chain FILE: the Service port's KUBE-SVC chain (servicePortChainName).
_kp_ipt_svc_chain() {
    _kp_names "$1"
    echo "KUBE-SVC-$(kp_hash 16 "$KP_SVC$_kp_proto")"
}

# _kp_ipt_sep_chain FILE ENDPOINT: the endpoint's KUBE-SEP chain (servicePortEndpointChainName).
_kp_ipt_sep_chain() {
    _kp_names "$1"
    echo "KUBE-SEP-$(kp_hash 16 "$KP_SVC$_kp_proto$2")"
}

# _kp_ipt_apply [STALE-CHAIN...]: one iptables-restore --noflush of kube-proxy's filter and
# nat chains for every iptables-mode Service port remembered, as a full sync writes them (a
# chain named in the input is flushed and written whole); each STALE-CHAIN is deleted in it.
_kp_ipt_apply() {
    _rules=$LAB_TMP/kp/iptables.rules
    _chains=$LAB_TMP/kp/iptables.chains
    : >"$_rules"
    : >"$_chains"
    _services=
    _nodeports=
    for _file in "$LAB_TMP"/kp/iptables-*; do
        [ -e "$_file" ] || continue
        _kp_names "$_file"
        _svc=$(_kp_ipt_svc_chain "$_file")
        _ext=KUBE-EXT-${_svc#KUBE-SVC-}
        _match="-m $_kp_proto -p $_kp_proto"
        echo ":$_svc - [0:0]" >>"$_chains"
        _services="$_services
-A KUBE-SERVICES -m comment --comment \"$KP_SVC cluster IP\" $_match -d $_cip --dport $_cport -j $_svc"
        for _lb in $KP_LB; do
            _services="$_services
-A KUBE-SERVICES -m comment --comment \"$KP_SVC loadbalancer IP\" $_match -d $_lb --dport $_cport -j $_ext"
        done
        [ -z "$KP_NODEPORT" ] || _nodeports="$_nodeports
-A KUBE-NODEPORTS -m comment --comment $KP_SVC $_match --dport $KP_NODEPORT -j $_ext"
        if [ -n "$KP_LB$KP_NODEPORT" ]; then
            echo ":$_ext - [0:0]" >>"$_chains"
            {
                echo "-A $_ext -m comment --comment \"masquerade traffic for $KP_SVC external destinations\" -j KUBE-MARK-MASQ"
                echo "-A $_ext -j $_svc"
            } >>"$_rules"
        fi
        echo "-A $_svc -m comment --comment \"$KP_SVC cluster IP\" $_match -d $_cip --dport $_cport ! -s $KP_CLUSTER_CIDR -j KUBE-MARK-MASQ" >>"$_rules"
        _n=$(echo "$KP_ENDPOINTS" | wc -w)
        for _ep in $KP_ENDPOINTS; do
            _sep=$(_kp_ipt_sep_chain "$_file" "$_ep")
            echo ":$_sep - [0:0]" >>"$_chains"
            _chance=
            [ "$_n" -le 1 ] ||
                _chance="-m statistic --mode random --probability $(awk -v n="$_n" 'BEGIN { printf "%.10f", 1 / n }') "
            {
                echo "-A $_svc -m comment --comment \"$KP_SVC -> $_ep\" $_chance-j $_sep"
                echo "-A $_sep -m comment --comment $KP_SVC -s ${_ep%:*} -j KUBE-MARK-MASQ"
                echo "-A $_sep -m comment --comment $KP_SVC $_match -j DNAT --to-destination $_ep"
            } >>"$_rules"
            _n=$((_n - 1))
        done
    done
    for _stale in "$@"; do
        echo ":$_stale - [0:0]" >>"$_chains"
        echo "-X $_stale" >>"$_rules"
    done
    {
        cat <<'IPT'
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
IPT
        cat "$_chains"
        [ -z "$_nodeports" ] || echo "${_nodeports#?}"
        [ -z "$_services" ] || echo "${_services#?}"
        cat <<'IPT'
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
IPT
        cat "$_rules"
        echo COMMIT
    } >"$LAB_TMP/kp/iptables.restore"
    iptables-restore --noflush <"$LAB_TMP/kp/iptables.restore" || {
        cat "$LAB_TMP/kp/iptables.restore"
        die "iptables-restore refused kube-proxy's rules"
    }
}
