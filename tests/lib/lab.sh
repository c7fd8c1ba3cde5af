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
