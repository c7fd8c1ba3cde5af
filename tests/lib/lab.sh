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

lab_log() {
    echo "lab: $*"
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
    ipvsadm -C 2>/dev/null
    for _ns in $($IP netns list 2>/dev/null | cut -d' ' -f1); do
        # A netns dies asynchronously, and its veth with it; deleting the pair first frees the
        # interface name at once for the next scenario.
        $IP link delete "h-$_ns" 2>/dev/null
        $IP netns delete "$_ns"
    done
    $IP link delete kube-ipvs0 2>/dev/null
    $IP link delete eth0 2>/dev/null
    # A scenario standing in for a kernel without module BTF hides /sys/kernel/btf.
    grep -q ' /sys/kernel/btf tmpfs ' /proc/mounts && umount /sys/kernel/btf
    # Back to the kernel defaults a scenario may have changed.
    [ -d /proc/sys/net/ipv4/vs ] && echo 1 >/proc/sys/net/ipv4/vs/conn_reuse_mode
    echo 1000 >/proc/sys/net/ipv4/icmp_ratelimit
    rm -rf "$LAB_TMP"
    [ -z "$_errexit" ] || set -e
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

# _mk_netns NAME IP: a netns with eth0 = IP/32, wired to the root netns.
_mk_netns() {
    _ns=$1
    _ip=$2
    _host=h-$_ns
    [ ${#_host} -le 15 ] || die "netns name $_ns is too long for an interface name"
    $IP netns add "$_ns" || die "cannot create netns $_ns"
    $IP link add "$_host" type veth peer name eth0 netns "$_ns" || die "cannot create veth for $_ns"
    $IP addr add "$GATEWAY/32" dev "$_host"
    $IP link set "$_host" up
    $IP route add "$_ip/32" dev "$_host"
    $IP -n "$_ns" link set lo up
    $IP -n "$_ns" addr add "$_ip/32" dev eth0
    $IP -n "$_ns" link set eth0 up
    $IP -n "$_ns" route add "$GATEWAY" dev eth0 scope link
    $IP -n "$_ns" route add default via "$GATEWAY" dev eth0 || die "cannot route netns $_ns"
}

# mk_pod NAME IP PORT[/udp]...: a backend pod serving each port (TCP unless /udp).
mk_pod() {
    _pod=$1
    _podip=$2
    shift 2
    _mk_netns "$_pod" "$_podip"
    for _p in "$@"; do
        case $_p in
        */udp)
            _port=${_p%/udp}
            _udp=--udp
            ;;
        *)
            _port=$_p
            _udp=
            ;;
        esac
        _log=$LAB_TMP/serve-$_pod-$_port$_udp.log
        $IP netns exec "$_pod" lab-net serve --listen "$_podip:$_port" $_udp >"$_log" 2>&1 &
        echo $! >>"$LAB_PIDS"
        wait_for "$_log" "listening on" 10 || {
            cat "$_log"
            die "pod $_pod did not start serving $_p"
        }
    done
}

# mk_client NAME IP: a client netns.
mk_client() {
    _mk_netns "$1" "$2"
}

# in_ns NAME CMD...: run CMD inside netns NAME.
in_ns() {
    _ns=$1
    shift
    $IP netns exec "$_ns" "$@"
}

# client_start TAG NETNS LAB-NET-CONNECT-ARGS...: start `lab-net connect` in NETNS in the
# background; its lines go to the dump `client-TAG` (see client_wait, dump_clients).
client_start() {
    _tag=$1
    _ns=$2
    shift 2
    $IP netns exec "$_ns" lab-net connect "$@" >"$LAB_TMP/client-$_tag.out" 2>"$LAB_TMP/client-$_tag.err" &
    CLIENT_PIDS="$CLIENT_PIDS $!"
}

# client_wait: wait for every started client; status 1 if any reported a failed connection.
client_wait() {
    _failed=0
    for _pid in $CLIENT_PIDS; do
        wait "$_pid" || _failed=1
    done
    CLIENT_PIDS=
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
# entries are still listed (TIME_WAIT 2 min, CLOSE 10 s): the dumps conns (connection table),
# rules and stats (exact counters), named conns-TAG etc. when a TAG is given.
dump_ipvs() {
    _sfx=${1:+-$1}
    dump "conns$_sfx" ipvsadm -Lnc
    dump "rules$_sfx" ipvsadm -Ln
    dump "stats$_sfx" ipvsadm -Ln --stats --exact
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
trace_bg() {
    TRACE_NAME=$1
    shift
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
    _n=$(($1 * 20))
    while [ "$_n" -gt 0 ]; do
        grep -q '^ipvs-trace: tracing' "$LAB_TMP/$TRACE_NAME.stderr" 2>/dev/null && return 0
        if ! kill -0 "$TRACE_PID" 2>/dev/null; then
            _st=0
            wait "$TRACE_PID" || _st=$?
            echo "lab: ipvs-trace exited with status $_st before tracing; its stderr:"
            cat "$LAB_TMP/$TRACE_NAME.stderr"
            die "ipvs-trace did not start"
        fi
        usleep 50000
        _n=$((_n - 1))
    done
    echo "lab: no 'ipvs-trace: tracing' line after $1 s; stderr so far:"
    cat "$LAB_TMP/$TRACE_NAME.stderr"
    die "ipvs-trace did not start"
}

# start_trace NAME ARGS...: trace_bg, then wait until it is tracing.
start_trace() {
    trace_bg "$@"
    trace_ready 60
    [ "${TRACE_TO_CONSOLE:-0}" = 1 ] && cat "$LAB_TMP/$TRACE_NAME.stderr"
    return 0
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
    _st=0
    wait "$TRACE_PID" || _st=$?
    if [ "${TRACE_TO_CONSOLE:-0}" = 1 ]; then
        # For a person: the summary (what followed the tracing line), and a failure if any.
        sed '1,/^ipvs-trace: tracing/d' "$LAB_TMP/$TRACE_NAME.stderr"
        [ "$_st" -eq 0 ] || lab_log "ipvs-trace exited with status $_st"
    else
        dump "$TRACE_NAME.out" cat "$LAB_TMP/$TRACE_NAME.out"
        dump "$TRACE_NAME.stderr" cat "$LAB_TMP/$TRACE_NAME.stderr"
        dump "$TRACE_NAME.status" echo "$_st"
    fi
    TRACE_PID=
}
