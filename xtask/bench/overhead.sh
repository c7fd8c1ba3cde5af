#!/bin/sh
# Benchmark `overhead` (cargo xtask bench): the same TCP connection storm through an IPVS rr
# service without and with the tracer attached, interleaved (without, with, quiet, stopped,
# without, with..., without); xtask compares each traced storm with the `without` storms on
# both sides of it (interpolated), so a drift of the machine cancels. `with`: `trace -o json`
# into a file, every event printed. `quiet`: the same probes, ring and decoding, but a --vip filter
# that matches nothing, so no line is formatted. `stopped`: the probes and the ring alone, the
# tracer stopped (SIGSTOP) once attached, its ring large enough for the whole storm: the
# kernel-side cost without any userspace. The guest has one vCPU, where the tracer's userspace
# competes with the storm itself, which on a real node it does on another core.
# Printed for xtask, one per storm: `bench: overhead round=R mode=M conns=C cs=T` (T
# centiseconds of guest uptime for C connections, each accepted by a pod and closed), then
# `bench: overhead round=R traced=N lost=L` from the tracer's summaries (`stopped` prints its
# lines only after SIGCONT, from the ring). Under QEMU TCG absolute rates mean
# nothing; the ratios do.
set -e
. /lab/lib.sh
# STORM and ROUNDS may come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
STORM=${STORM:-20000}
ROUNDS=${ROUNDS:-3}
CLIENTS=4
node_setup

VIP=172.31.0.10
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr
for i in 1 2 3 4; do
    mk_pod pod$i 10.245.1.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.1.$i:8080 -m -w 1
done
for i in $(seq 1 $CLIENTS); do
    mk_client client$i 198.51.100.1$i
done

# storm COUNT: COUNT connections from CLIENTS clients at once, each closed with a RST so no
# TIME_WAIT pins the clients' ports over the rounds; sets STORM_CS to the centiseconds it took.
storm() {
    _t0=$(uptime_cs)
    for i in $(seq 1 $CLIENTS); do
        client_start storm$i client$i --to $VIP:80 --count $(($1 / CLIENTS)) --rst
    done
    client_wait || {
        cat "$LAB_TMP"/client-storm*.err | sort | uniq -c | head
        die "connections failed during the storm"
    }
    STORM_CS=$(($(uptime_cs) - _t0))
}

lab_log "warm-up: $((STORM / 10)) connections"
storm $((STORM / 10))
lost_total=0
for round in $(seq 1 "$ROUNDS"); do
    storm "$STORM"
    echo "bench: overhead round=$round mode=without conns=$STORM cs=$STORM_CS"
    for mode in with quiet stopped; do
        case $mode in
        with) start_trace storm$round ;;
        # TEST-NET-1: no virtual service has it.
        quiet) start_trace storm$round --vip 192.0.2.1 ;;
        # 32 MiB holds ~230,000 records: nothing is lost while nobody reads.
        stopped)
            start_trace storm$round --ring-size 33554432
            kill -STOP "$TRACE_PID"
            ;;
        esac
        storm "$STORM"
        [ $mode != stopped ] || kill -CONT "$TRACE_PID"
        echo "bench: overhead round=$round mode=$mode conns=$STORM cs=$STORM_CS"
        TRACE_TO_CONSOLE=1 stop_trace >/dev/null
        lines=$(wc -l <"$LAB_TMP/storm$round.out")
        new=$(sed -n 's/.*events: new=\([0-9]*\) .*/\1/p' "$LAB_TMP/storm$round.stderr")
        lost=$(sed -n 's/^ *lost: \([0-9]*\) .*/\1/p' "$LAB_TMP/storm$round.stderr")
        echo "bench: overhead round=$round traced=$lines new=$new lost=$lost"
        rm -f "$LAB_TMP/storm$round.out"
    done
done
# The closing baseline: xtask compares each traced storm with the rate without the tracer
# interpolated between the `without` storms before and after it, which cancels the guest's drift.
storm "$STORM"
echo "bench: overhead round=$((ROUNDS + 1)) mode=without conns=$STORM cs=$STORM_CS"
dump_stats
