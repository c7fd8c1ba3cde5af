#!/bin/sh
# Benchmark `overhead` (cargo xtask bench): the same traffic through an IPVS rr service without
# and with the tracer attached, interleaved; xtask compares each traced run with the `without`
# runs on both sides of it (interpolated), so a drift of the machine cancels. Two workloads,
# each run in every mode in every round:
# - `conn`: a storm of short TCP connections (one small write, closed with a RST): the cost
#   per connection (ip_vs_conn_new, and tcp_state_transition on its 4 packets);
# - `packets`: one long TCP connection per client making many small request/response
#   exchanges: the cost per packet (tcp_state_transition on every packet IPVS handles);
# - `bulk`: an iperf3 stream of BULK_MB MiB through a service with one real server (iperf3's
#   control and data connections must reach the same server): large packets.
# Modes, for each --attach path in ATTACH (fentry, kprobe): `with`: `trace -o json` into a
# file, every event printed. `quiet`: a --vip filter that matches nothing (the probes' filter
# drops every decision before the ring). `stopped`: the probes and the ring alone, the tracer
# stopped (SIGSTOP) once attached, its ring large enough for the whole run (32 MiB for
# `conn`; for `packets` and `bulk`, which make a handful of records, the default ring, and
# `stopped_ring32m` the 32 MiB one, to tell what the big ring costs): the kernel-side cost
# without any userspace; `stopped_new` the same with `--event new` only (no per-packet probe,
# no ip_vs_leave): the question the bpftrace one-liner answers. The guest has one vCPU, where
# the tracer's userspace competes with the traffic itself, which on a real node it does on
# another core. And `peer.bpftrace`:
# the one-liner a user would write instead, a kretprobe on ip_vs_conn_new counting connections
# per backend (skipped, saying why, where bpftrace cannot run it); and `floor`, per attach path:
# empty programs on the same hooks, the price of the hooks alone. Last, each of our programs'
# own instructions a run (bpftool, with the kernel's BPF run statistics).
# Printed for xtask, one per run: `bench: overhead round=R workload=W mode=M units=N ns=T` (T
# nanoseconds of guest time for N connections or exchanges, now_ns in /lab/lib.sh: under
# -icount one nanosecond is one instruction), then `bench: overhead round=R
# traced=N lost=L` from the tracer's summaries (`stopped` prints its lines only after SIGCONT,
# from the ring), and at the end the packets IPVS counted for the `packets` service
# (`bench: overhead packets=P exchanges=E`). Under QEMU TCG absolute rates mean nothing; the
# ratios do.
set -e
. /lab/lib.sh
# STORM, EXCHANGES, ROUNDS and ATTACH may come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
STORM=${STORM:-20000}
EXCHANGES=${EXCHANGES:-100000}
# 1 GiB (about 4 s of guest time): the receiver's interval has centiseconds, which at 256 MiB
# (1 s) was a step of 1%.
BULK_MB=${BULK_MB:-1024}
ROUNDS=${ROUNDS:-3}
ATTACH=${ATTACH:-fentry kprobe}
CLIENTS=4
node_setup

VIP=172.31.0.10
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr
ipvsadm -A -t $VIP:90 -s rr
ipvsadm -A -t $VIP:5201 -s rr
for i in 1 2 3 4; do
    mk_pod pod$i 10.245.1.$i 8080 9090/echo
    ipvsadm -a -t $VIP:80 -r 10.245.1.$i:8080 -m -w 1
    ipvsadm -a -t $VIP:90 -r 10.245.1.$i:9090 -m -w 1
done
ipvsadm -a -t $VIP:5201 -r 10.245.1.1:5201 -m -w 1
nsenter --net=/run/netns/pod1 iperf3 -s -p 5201 >"$LAB_TMP/iperf3-server.log" 2>&1 &
echo $! >>"$LAB_PIDS"
for i in $(seq 1 $CLIENTS); do
    mk_client client$i 198.51.100.1$i
done

# run WORKLOAD COUNT: COUNT connections (conn) or exchanges (packets) from CLIENTS clients at
# once; sets RUN_NS to the nanoseconds of guest time it took (now_ns). Connections close with
# a RST so no TIME_WAIT pins the clients' ports over the rounds.
EXCHANGES_DONE=0
run() {
    quiesce
    _t0=$(now_ns)
    [ "$1" != packets ] || EXCHANGES_DONE=$((EXCHANGES_DONE + $2))
    for i in $(seq 1 $CLIENTS); do
        case $1 in
        conn) client_start run$i client$i --to $VIP:80 --count $(($2 / CLIENTS)) --rst ;;
        packets)
            client_start run$i client$i --to $VIP:90 --count 1 --exchanges $(($2 / CLIENTS)) \
                --rst --timeout-ms 20000
            ;;
        bulk)
            # One stream: the server takes one test at a time.
            [ "$i" -eq 1 ] || continue
            nsenter --net=/run/netns/client1 iperf3 -c $VIP -p 5201 -n "${2}M" -l 64K \
                >"$LAB_TMP/iperf3.out" 2>&1 || {
                cat "$LAB_TMP/iperf3.out"
                die "iperf3 failed"
            }
            ;;
        esac
    done
    client_wait || {
        cat "$LAB_TMP"/client-run*.err | sort | uniq -c | head
        die "connections failed during the $1 run"
    }
    RUN_NS=$(($(now_ns) - _t0))
    if [ "$1" = bulk ]; then
        # iperf3 -n ends on a whole second of its reporting timer (every bulk run took 100 cs
        # by the uptime): the transfer's own time is its receiver line's interval. `%.0f`, not
        # `%d`: busybox awk's `%d` is 32 bits, and 4 s are 4e9 ns.
        RUN_NS=$(awk '/receiver/ { split($3, t, "-"); printf "%.0f", t[2] * 1e9 }' "$LAB_TMP/iperf3.out")
    fi
}

units() {
    case $1 in
    conn) echo "$STORM" ;;
    packets) echo "$EXCHANGES" ;;
    bulk) echo "$BULK_MB" ;;
    esac
}

# The peer: bpftrace's one-liner, typed through ip_vs's BTF. PEER_REASON says why not, if not.
PEER='kretprobe:ip_vs_conn_new { @conns[((struct ip_vs_conn *)retval)->dest] = count(); }'
PEER_REASON=
if ! command -v bpftrace >/dev/null; then
    PEER_REASON="bpftrace is not in the guest"
fi

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

peer_start() {
    bpftrace_start "$PEER" || {
        PEER_REASON=$BT_REASON
        return 1
    }
    PEER_PID=$BT_PID
}

peer_stop() {
    kill -INT "$PEER_PID"
    wait "$PEER_PID" || true
    # One map line per backend: the connections it counted.
    echo "bench: overhead peer-counted=$(awk -F': ' '/^@conns/ { n += $2 } END { print n + 0 }' "$LAB_TMP/bpftrace.out")"
}

# The floor of each attach path: empty programs (bpftrace's, which return at once) on the same
# three hooks. What a run costs over `without` here is the trampolines' or the kprobes' own
# price, before any code of ours runs; ours over the floor is what our programs do.
FLOOR_fentry='kretfunc:ip_vs:ip_vs_conn_new {} kfunc:ip_vs:tcp_state_transition {} kfunc:ip_vs:ip_vs_leave {}'
FLOOR_kprobe='kretprobe:ip_vs_conn_new {} kprobe:tcp_state_transition {} kprobe:ip_vs_leave {}'
FLOOR_REASON=
[ -z "$PEER_REASON" ] || FLOOR_REASON=$PEER_REASON

lab_log "warm-up: $((STORM / 10)) connections, $((EXCHANGES / 10)) exchanges"
run conn $((STORM / 10))
run packets $((EXCHANGES / 10))
run bulk $((BULK_MB / 4))
for round in $(seq 1 "$ROUNDS"); do
    for workload in conn packets bulk; do
        n=$(units $workload)
        run $workload "$n"
        echo "bench: overhead round=$round workload=$workload mode=without units=$n ns=$RUN_NS"
        for attach in $ATTACH; do
            # `stopped_new`: only the probes `--event new` asks for (no per-packet probe), the
            # question the bpftrace one-liner answers: what that costs, beside the peer.
            modes="with quiet stopped stopped_new"
            # The per-packet workloads make a handful of records: the default ring holds them
            # while stopped, and `stopped_ring32m` tells what the big ring itself costs.
            [ $workload = conn ] || modes="$modes stopped_ring32m"
            for mode in $modes; do
                name=t$round-$workload-$attach-$mode
                case $mode in
                with) start_trace "$name" --attach "$attach" ;;
                # TEST-NET-1: no virtual service has it.
                quiet) start_trace "$name" --attach "$attach" --vip 192.0.2.1 ;;
                # 32 MiB holds ~230,000 records: nothing is lost while nobody reads.
                stopped | stopped_ring32m)
                    if [ $workload = conn ] || [ $mode = stopped_ring32m ]; then
                        start_trace "$name" --attach "$attach" --ring-size 33554432
                    else
                        start_trace "$name" --attach "$attach"
                    fi
                    kill -STOP "$TRACE_PID"
                    ;;
                stopped_new)
                    start_trace "$name" --attach "$attach" --event new --ring-size 33554432
                    kill -STOP "$TRACE_PID"
                    ;;
                esac
                run $workload "$n"
                case $mode in stopped*) kill -CONT "$TRACE_PID" ;; esac
                echo "bench: overhead round=$round workload=$workload mode=$attach.$mode units=$n ns=$RUN_NS"
                TRACE_TO_CONSOLE=1 stop_trace >/dev/null
                lines=$(wc -l <"$LAB_TMP/$name.out")
                lost=$(sed -n 's/^ *lost: \([0-9]*\) .*/\1/p' "$LAB_TMP/$name.stderr")
                echo "bench: overhead round=$round traced=$lines lost=$lost"
                rm -f "$LAB_TMP/$name.out"
            done
        done
        if [ -z "$PEER_REASON" ] && peer_start; then
            run $workload "$n"
            echo "bench: overhead round=$round workload=$workload mode=peer.bpftrace units=$n ns=$RUN_NS"
            peer_stop
        fi
    done
    # One bpftrace start per path and round (each takes minutes under TCG) serves both
    # per-connection and per-packet workloads.
    for attach in $ATTACH; do
        [ -z "$FLOOR_REASON" ] || break
        eval "floor=\$FLOOR_$attach"
        refcnt=$(cat /sys/module/ip_vs/refcnt)
        if ! bpftrace_start "$floor"; then
            FLOOR_REASON="$attach: $BT_REASON"
            break
        fi
        # What attached: bpftrace's count, and (6.2+) one ip_vs reference per trampoline.
        lab_log "floor $attach: $(head -1 "$LAB_TMP/bpftrace.out"); ip_vs refcnt $refcnt -> $(cat /sys/module/ip_vs/refcnt)"
        for workload in conn packets; do
            n=$(units $workload)
            run $workload "$n"
            echo "bench: overhead round=$round workload=$workload mode=$attach.floor units=$n ns=$RUN_NS"
        done
        kill -INT "$BT_PID"
        wait "$BT_PID" || true
    done
done
[ -z "$PEER_REASON" ] || echo "bench: overhead peer=none reason=$(echo "$PEER_REASON" | tr ' =' '__')"
[ -z "$FLOOR_REASON" ] || echo "bench: overhead floor=none reason=$(echo "$FLOOR_REASON" | tr ' =' '__')"
# The closing baselines: xtask compares each traced run with the rate without the tracer
# interpolated between the `without` runs before and after it, which cancels the guest's drift.
for workload in conn packets bulk; do
    n=$(units $workload)
    run $workload "$n"
    echo "bench: overhead round=$((ROUNDS + 1)) workload=$workload mode=without units=$n ns=$RUN_NS"
done
IPVS_SNAPSHOT_AT=$(uptime_cs)
ipvs_settle
# Packets through the exchanges' service, both directions, over every run (warm-up included):
# what one exchange costs in packets.
_pkts=$(ipvsadm -Ln --stats --exact -t $VIP:90 | awk '$1 == "TCP" { print $4 + $5 }')
echo "bench: overhead packets=$_pkts exchanges=$EXCHANGES_DONE"

# Each program's own cost, after the ratios (and apart from them: the statistics cost two
# clock reads a run themselves). With kernel.bpf_stats_enabled the kernel adds up every
# program's run time and runs; under -icount shift=0 a nanosecond of guest time is one
# instruction, so run_time_ns / run_cnt is what a program executes a run, its trampoline's
# or kprobe's entry and exit not included (the floor holds those). Printed for xtask as
# `bench: overhead profile=ATTACH program=NAME runs=N ns=T`, from bpftool.
if command -v bpftool >/dev/null; then
    for attach in $ATTACH; do
        start_trace "profile-$attach" --attach "$attach" --ring-size 33554432
        kill -STOP "$TRACE_PID"
        sysctl -q -w kernel.bpf_stats_enabled=1
        run conn $((STORM / 10))
        run packets $((EXCHANGES / 10))
        sysctl -q -w kernel.bpf_stats_enabled=0
        # `ID: TYPE  name NAME  tag ... run_time_ns T run_cnt N`: the programs of this trace.
        bpftool prog show | awk -v a="$attach" '
            / name / && /run_time_ns/ {
                for (i = 1; i < NF; i++) {
                    if ($i == "name") n = $(i + 1)
                    if ($i == "run_time_ns") t = $(i + 1)
                    if ($i == "run_cnt") c = $(i + 1)
                }
                if (n ~ /^(ip_vs|tcp_state)/)
                    print "bench: overhead profile=" a " program=" n " runs=" c " ns=" t
            }'
        kill -CONT "$TRACE_PID"
        stop_trace >/dev/null
    done
else
    lab_log "no bpftool in the guest: no per-program profile"
fi
dump_stats
