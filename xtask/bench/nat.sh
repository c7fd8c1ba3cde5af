#!/bin/sh
# Benchmark `nat` (cargo xtask bench): the `overhead` benchmark's connection storm through
# kube-proxy's nftables mode instead of IPVS (issue 17), without and with the tracer's NAT
# probe, interleaved; xtask compares each traced run with the `without` runs on both sides of
# it (interpolated), so a drift of the guest cancels.
# The node: kube-proxy's nftables table as tests/lib/lab.sh writes it (kp_setup, kp_service:
# the `services` chain, the `service-ips` map, a service chain picking one of 4 endpoint
# chains with `numgen random mod 4 vmap`, each ending in `dnat to`), 4 pods, 4 client pods
# (in the cluster CIDR: pod-to-Service traffic, not masqueraded, as most ClusterIP traffic
# is). The endpoint is bound once per connection, in `nf_nat_setup_info`, which the probe
# hooks; later packets reuse the binding. Workloads:
# - `conn`: a storm of short TCP connections (one small write, closed with a RST): the cost
#   per connection;
# - `packets`: long TCP connections (10 per client, one after another) making many small
#   request/response exchanges, `stopped` only: that there is no per-packet cost. Where its
#   connections land is random (numgen), and two on one pod cost otherwise than one on each:
#   each run prints how many landed on each pod (`placement`), read from conntrack.
# Modes, for each --attach path in ATTACH (fentry, kprobe): `with`: `trace -o json
# --dataplane nftables` into a file, every event printed. `quiet`: the same with a --vip filter
# that matches nothing (the probe drops every binding before the ring). `stopped`: the probe
# and the ring alone, the tracer stopped (SIGSTOP) once attached, a ring of 32 MiB holding the
# whole run: the kernel-side cost without userspace (the guest has one vCPU, where the
# tracer's userspace competes with the traffic, which on a node it does on another core).
# `stopped_all`: the same without --dataplane, every probe attached as `serve` attaches them on
# a node where ip_vs is loaded (the IPVS ones never run for this traffic). `floor`: bpftrace's
# empty programs on the same hook (`kretfunc`, or a `kprobe`/`kretprobe` pair), the hook's own
# price before any code of ours. Last, the NAT programs' own instructions a run and runs a
# connection (bpftool, with the kernel's BPF run statistics), and conntrack's drop counters.
# Printed for xtask, one per run: `bench: nat round=R workload=W mode=M units=N ns=T` (T
# nanoseconds of guest time for N connections or exchanges, see now_ns in /lab/lib.sh),
# `bench: nat round=R mode=M traced=N lost=L` from each traced run's output and summary,
# `... placement=A+B+C+D` after each packets run; at the end `bench: nat profile=ATTACH
# program=NAME runs=N ns=T conns=C` and `bench: nat conntrack KEY=N...`.
# Under QEMU TCG absolute rates mean nothing; the ratios do.
set -e
. /lab/lib.sh
# STORM, EXCHANGES, ROUNDS and ATTACH may come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
STORM=${STORM:-20000}
EXCHANGES=${EXCHANGES:-100000}
ROUNDS=${ROUNDS:-3}
ATTACH=${ATTACH:-fentry kprobe}
CLIENTS=4
node_setup
kp_setup nftables
# kube-proxy raises the table to conntrack.maxPerCore (32,768) per core, at least 131,072. The
# kernel's default for the guest's memory (65,536) is near what a storm leaves behind: its
# entries stay 10 s in CLOSE after the RST, and a full table drops new connections' SYNs.
sysctl -q -w net.netfilter.nf_conntrack_max=131072

VIP=172.31.0.20
for i in 1 2 3 4; do
    mk_pod pod$i 10.245.1.$i 8080 9090/echo
    EPS_HTTP="${EPS_HTTP:-} 10.245.1.$i:8080"
    EPS_ECHO="${EPS_ECHO:-} 10.245.1.$i:9090"
done
# shellcheck disable=SC2086 # one endpoint per word
kp_service nftables bench/storm:http tcp $VIP:80 $EPS_HTTP
# shellcheck disable=SC2086 # one endpoint per word
kp_service nftables bench/echo:echo tcp $VIP:90 $EPS_ECHO
for i in $(seq 1 $CLIENTS); do
    mk_client client$i 10.245.2.$i
done

# run WORKLOAD COUNT: COUNT connections (conn) or exchanges (packets) from CLIENTS clients at
# once; sets RUN_NS to the nanoseconds it took. Connections close with a RST so no TIME_WAIT
# pins the clients' ports over the rounds.
run() {
    # Only this run's connections in the table, for `placement`.
    [ "$1" != packets ] || conntrack -F 2>/dev/null || true
    quiesce
    _t0=$(now_ns)
    for i in $(seq 1 $CLIENTS); do
        case $1 in
        conn) client_start run$i client$i --to $VIP:80 --count $(($2 / CLIENTS)) --rst ;;
        packets)
            client_start run$i client$i --to $VIP:90 --count 10 \
                --exchanges $(($2 / CLIENTS / 10)) --rst --timeout-ms 20000
            ;;
        esac
    done
    client_wait || {
        cat "$LAB_TMP"/client-run*.err | sort | uniq -c | head
        die "connections failed during the $1 run"
    }
    RUN_NS=$(($(now_ns) - _t0))
}

# placement: how many of the last run's connections to the echo Service each pod got (the
# reply source of their conntrack entries, which stay 10 s in CLOSE), e.g. `8+9+11+12`.
placement() {
    conntrack -L -p tcp --orig-dst $VIP --orig-port-dst 90 2>/dev/null |
        sed -n 's/.* src=\(10\.245\.1\.[0-9]*\) dst=10\.245\.2\..*/\1/p' |
        sort | uniq -c | awk '{ print $1 }' | sort -n | tr '\n' '+' | sed 's/+$//'
}

units() {
    case $1 in
    conn) echo "$STORM" ;;
    packets) echo "$EXCHANGES" ;;
    esac
}

# modes WORKLOAD: the traced modes of each attach path for WORKLOAD.
modes() {
    case $1 in
    conn) echo "with quiet stopped stopped_all" ;;
    packets) echo "stopped" ;;
    esac
}

# bpftrace_start PROGRAM: bpftrace running PROGRAM, attached (up to 300 s: LLVM under TCG is
# slow); sets BT_PID, or BT_REASON (why not) and fails.
bpftrace_start() {
    bpftrace -e "$1" >"$LAB_TMP/bpftrace.out" 2>&1 &
    BT_PID=$!
    if ! wait_for "$LAB_TMP/bpftrace.out" "Attaching" 300; then
        BT_REASON="bpftrace did not attach: $(head -c 300 "$LAB_TMP/bpftrace.out" | tr '\n' ' ')"
        kill "$BT_PID" 2>/dev/null || true
        wait "$BT_PID" 2>/dev/null || true
        return 1
    fi
    # "Attaching" comes before the attach is done; the next line (or a second) says it is.
    sleep 2
    if ! kill -0 "$BT_PID" 2>/dev/null; then
        BT_REASON="bpftrace exited: $(head -c 300 "$LAB_TMP/bpftrace.out" | tr '\n' ' ')"
        return 1
    fi
}

# The floor of each attach path: empty programs on the hook our programs use, which return at
# once. What a run costs over `without` here is the trampoline's or the kprobes' own price;
# ours over the floor is what our programs do.
FLOOR_fentry='kretfunc:nf_nat:nf_nat_setup_info {}'
FLOOR_kprobe='kprobe:nf_nat_setup_info {} kretprobe:nf_nat_setup_info {}'
FLOOR_REASON=
command -v bpftrace >/dev/null || FLOOR_REASON="bpftrace is not in the guest"

lab_log "warm-up: $((STORM / 10)) connections, $((EXCHANGES / 10)) exchanges"
run conn $((STORM / 10))
run packets $((EXCHANGES / 10))
for round in $(seq 1 "$ROUNDS"); do
    for workload in conn packets; do
        n=$(units $workload)
        run $workload "$n"
        echo "bench: nat round=$round workload=$workload mode=without units=$n ns=$RUN_NS"
        [ $workload != packets ] ||
            echo "bench: nat round=$round workload=$workload mode=without placement=$(placement)"
        for attach in $ATTACH; do
            for mode in $(modes $workload); do
                name=t$round-$workload-$attach-$mode
                case $mode in
                with) start_trace "$name" --attach "$attach" --dataplane nftables ;;
                # TEST-NET-1: no Service has it.
                quiet) start_trace "$name" --attach "$attach" --dataplane nftables --vip 192.0.2.1 ;;
                # 32 MiB holds ~230,000 records: nothing is lost while nobody reads.
                stopped) start_trace "$name" --attach "$attach" --dataplane nftables --ring-size 33554432 ;;
                stopped_all) start_trace "$name" --attach "$attach" --ring-size 33554432 ;;
                esac
                case $mode in stopped*) kill -STOP "$TRACE_PID" ;; esac
                run $workload "$n"
                case $mode in stopped*) kill -CONT "$TRACE_PID" ;; esac
                echo "bench: nat round=$round workload=$workload mode=$attach.$mode units=$n ns=$RUN_NS"
                [ $workload != packets ] ||
                    echo "bench: nat round=$round workload=$workload mode=$attach.$mode placement=$(placement)"
                TRACE_TO_CONSOLE=1 stop_trace >/dev/null
                lines=$(wc -l <"$LAB_TMP/$name.out")
                lost=$(sed -n 's/^ *lost: \([0-9]*\) .*/\1/p' "$LAB_TMP/$name.stderr")
                echo "bench: nat round=$round workload=$workload mode=$attach.$mode traced=$lines lost=${lost:-0}"
                rm -f "$LAB_TMP/$name.out"
            done
        done
    done
    # One bpftrace start per path and round (each takes minutes under TCG).
    for attach in $ATTACH; do
        [ -z "$FLOOR_REASON" ] || break
        eval "floor=\$FLOOR_$attach"
        if ! bpftrace_start "$floor"; then
            FLOOR_REASON="$attach: $BT_REASON"
            break
        fi
        lab_log "floor $attach: $(head -1 "$LAB_TMP/bpftrace.out")"
        n=$(units conn)
        run conn "$n"
        echo "bench: nat round=$round workload=conn mode=$attach.floor units=$n ns=$RUN_NS"
        kill -INT "$BT_PID"
        wait "$BT_PID" || true
    done
done
[ -z "$FLOOR_REASON" ] || echo "bench: nat floor=none reason=$(echo "$FLOOR_REASON" | tr ' =' '__')"
# The closing baselines: each traced run is compared with the rate without the tracer
# interpolated between the `without` runs before and after it.
for workload in conn packets; do
    n=$(units $workload)
    run $workload "$n"
    echo "bench: nat round=$((ROUNDS + 1)) workload=$workload mode=without units=$n ns=$RUN_NS"
    [ $workload != packets ] ||
        echo "bench: nat round=$((ROUNDS + 1)) workload=$workload mode=without placement=$(placement)"
done

# The NAT programs' own cost, after the ratios (and apart from them: the statistics cost two
# clock reads a run themselves). With kernel.bpf_stats_enabled the kernel adds up every
# program's run time and runs; under -icount shift=0 a nanosecond of guest time is one
# instruction, so run_time_ns / run_cnt is what a program executes a run, its trampoline's or
# kprobe's entry and exit not included (the floor holds those); runs / connections is how
# often the hook fires for one connection.
if command -v bpftool >/dev/null; then
    for attach in $ATTACH; do
        start_trace "profile-$attach" --attach "$attach" --dataplane nftables --ring-size 33554432
        kill -STOP "$TRACE_PID"
        sysctl -q -w kernel.bpf_stats_enabled=1
        run conn $((STORM / 10))
        sysctl -q -w kernel.bpf_stats_enabled=0
        # `ID: TYPE  name NAME  tag ... run_time_ns T run_cnt N`: the programs of this trace.
        bpftool prog show | awk -v a="$attach" -v c=$((STORM / 10)) '
            / name / && /run_time_ns/ {
                for (i = 1; i < NF; i++) {
                    if ($i == "name") n = $(i + 1)
                    if ($i == "run_time_ns") t = $(i + 1)
                    if ($i == "run_cnt") r = $(i + 1)
                }
                if (n ~ /^nf_nat/)
                    print "bench: nat profile=" a " program=" n " runs=" r " ns=" t " conns=" c
            }'
        kill -CONT "$TRACE_PID"
        stop_trace >/dev/null
    done
else
    lab_log "no bpftool in the guest: no per-program profile"
fi
# A full table or a lost insert race drops a SYN, which costs a retransmission (a second):
# conntrack's own counters over the whole boot, summed over CPUs.
conntrack -S 2>/dev/null | awk '
    { for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) sum[kv[1]] += kv[2] }
    END { printf "bench: nat conntrack drop=%d early_drop=%d insert_failed=%d\n", sum["drop"], sum["early_drop"], sum["insert_failed"] }'
