#!/bin/sh
# Benchmark `loss` (cargo xtask bench): a burst of connections into a one-page ring buffer
# while the tracer is stopped (SIGSTOP), so the ring overflows; then SIGCONT and SIGINT.
# Printed for xtask: `bench: loss delivered=D lost=L conns=C new=N`: D the JSON lines the
# tracer wrote, L its summary's `lost:`, C the kernel's own count (ipvsadm --stats Conns of the
# service), N the summary's new=. Accounting is exact when D + L = C. Not an e2e scenario:
# tests/scenarios/ belongs to the completeness test.
set -e
. /lab/lib.sh
node_setup

# BURST may come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
BURST=${BURST:-2000}
VIP=172.31.0.10
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr
for i in 1 2 3 4; do
    mk_pod pod$i 10.245.1.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.1.$i:8080 -m -w 1
done
for i in 1 2; do
    mk_client client$i 198.51.100.1$i
done

# One page: the smallest ring the kernel accepts.
start_trace loss --ring-size "$(getconf PAGESIZE 2>/dev/null || echo 4096)"
kill -STOP "$TRACE_PID"
started=$(uptime_cs)
for i in 1 2; do
    client_start client$i client$i --to $VIP:80 --count $((BURST / 2))
done
client_wait || lab_log "some connections failed"
lab_log "burst of $BURST in $(($(uptime_cs) - started)) cs with the tracer stopped"
kill -CONT "$TRACE_PID"
# Let it drain what the ring holds before the summary.
sleep 1
dump_ipvs
stop_trace
ipvs_settle
conns=$(ipvsadm -Ln --stats --exact -t $VIP:80 | awk '$1 == "TCP" { print $3 }')
delivered=$(grep -c '"event":"new"' "$LAB_TMP/loss.out" || true)
lines=$(wc -l <"$LAB_TMP/loss.out")
lost=$(sed -n 's/^ *lost: \([0-9]*\) .*/\1/p' "$LAB_TMP/loss.stderr")
new=$(sed -n 's/.*events: new=\([0-9]*\) .*/\1/p' "$LAB_TMP/loss.stderr")
echo "bench: loss delivered=$delivered lost=$lost conns=$conns new=$new lines=$lines burst=$BURST"
