#!/bin/sh
# Benchmark `soak` (cargo xtask bench): MINUTES minutes of continuous connections while backends
# come and go, with `ipvs-trace trace -o json` running throughout, in one boot.
#   web   TCP 172.31.1.1:80 rr        pods 10.246.1.1-4, named: the lab's API server serves the
#                                     Service soak/web, its pods and its EndpointSlice, which
#                                     follows every change of the real servers (a watch event)
#   api   TCP 172.31.1.2:80 wrr       pods 10.246.2.1-4, weights changed at every step
#   sess  TCP 172.31.1.3:80 rr -p 30  pods 10.246.3.1-3 (persistent: templates, affinity)
#   dns   UDP 172.31.1.4:53 rr        pods 10.246.4.1-3:5353, weights changed at every step
# Each service has one pod of its pool out of IPVS at a time; every CHURN_S seconds that pod is
# added back and the next one removed (so real servers are added and removed under traffic,
# never fewer than two). Six client loops (web twice, one closing with RST; api; sess from two
# clients; dns), each `lab-net connect` runs of 20 connections 60 ms apart, until the end.
# Printed for xtask: `bench: soak t=S rss_kb=K` every 10 s (the tracer's VmRSS, S seconds into
# the traffic); per service `bench: soak service=NAME proto=P vip=V sched=S conns=C new=N
# template=T named=M` (C: the kernel's Conns delta over the run from ipvsadm --stats --exact;
# N, T, M: the tracer's JSON lines for that VIP, M those carrying a Service name); then
# `bench: soak status=X summary=0|1 new= template= reused= no_dest= lost= malformed= churn=K
# clients_ok= clients_failed=` (X the tracer's exit status after SIGINT, the counts from its
# summary).
set -e
. /lab/lib.sh
node_setup

# MINUTES may come from xtask.
[ ! -f /lab/bench.env ] || . /lab/bench.env
MINUTES=${MINUTES:-10}
CHURN_S=25
SAMPLE_S=10

# name proto vip port sched pool-prefix pool-size backend-port ipvsadm-flags
SERVICES="web:tcp:172.31.1.1:80:rr:10.246.1:4:8080:
api:tcp:172.31.1.2:80:wrr:10.246.2:4:8080:
sess:tcp:172.31.1.3:80:rr:10.246.3:3:8080:-p 30
dns:udp:172.31.1.4:53:rr:10.246.4:3:5353:"

# svc_fields LINE: sets name proto vip port sched prefix pool bport extra.
svc_fields() {
    IFS=: read -r name proto vip port sched prefix pool bport extra <<EOF
$1
EOF
    if [ "$proto" = udp ]; then flag=-u; else flag=-t; fi
}

# weight NAME STEP MEMBER: wrr-style weights that change at every step (api and dns), 1 else.
weight() {
    case $1 in
    api | dns) echo $((($2 + $3) % 4 + 1)) ;;
    *) echo 1 ;;
    esac
}

# web_slice STEP: soak/web's EndpointSlice with the pods IPVS has at STEP (all but the one out).
web_slice() {
    _out=$(($1 % 4 + 1))
    _eps=
    for _i in 1 2 3 4; do
        [ "$_i" -ne "$_out" ] || continue
        _eps="$_eps${_eps:+,}{\"addresses\":[\"10.246.1.$_i\"],\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false},\"nodeName\":\"soak-node\",\"targetRef\":{\"kind\":\"Pod\",\"name\":\"web-$_i\",\"namespace\":\"soak\"}}"
    done
    echo "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"web-x7k2p\",\"namespace\":\"soak\",\"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080}],\"endpoints\":[$_eps]}"
}

# The names: soak/web, its four pods and node, and the slice as at step 0.
{
    echo '{"apiVersion":"v1","kind":"List","items":['
    echo '{"apiVersion":"v1","kind":"Node","metadata":{"name":"soak-node"},"status":{"addresses":[{"type":"InternalIP","address":"10.245.96.43"}]}},'
    for i in 1 2 3 4; do
        echo "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-$i\",\"namespace\":\"soak\"},\"spec\":{\"nodeName\":\"soak-node\"},\"status\":{\"podIP\":\"10.246.1.$i\",\"podIPs\":[{\"ip\":\"10.246.1.$i\"}]}},"
    done
    echo '{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"soak"},"spec":{"type":"ClusterIP","clusterIP":"172.31.1.1","clusterIPs":["172.31.1.1"],"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}]}},'
    web_slice 0
    echo ']}'
} >"$LAB_TMP/soak-cluster.json"

# Pods and services; at step 0 pod 1 of each pool is out.
echo "$SERVICES" | while read -r line; do
    svc_fields "$line"
    add_vip "$vip"
    # shellcheck disable=SC2086 # extra is empty or `-p 30`
    ipvsadm -A $flag "$vip:$port" -s "$sched" $extra
    i=1
    while [ "$i" -le "$pool" ]; do
        if [ "$proto" = udp ]; then
            mk_pod "$name$i" "$prefix.$i" "$bport/udp"
        else
            mk_pod "$name$i" "$prefix.$i" "$bport"
        fi
        [ "$i" -eq 1 ] || ipvsadm -a $flag "$vip:$port" -r "$prefix.$i:$bport" -m -w "$(weight "$name" 0 "$i")"
        i=$((i + 1))
    done
done
for c in 1 2 3 4 5 6; do
    mk_client soakc$c 198.51.100.2$c
done
ipvsadm -Ln

kube_apiserver_start "$LAB_TMP/soak-cluster.json"
start_trace soak --kubeconfig "$LAB_KUBECONFIG"
trace_wait_stderr "kubernetes names synced" 120
TRACER=$TRACE_PID

# conns_now: `VIP:PORT CONNS` per service from the kernel's exact counters.
conns_now() {
    ipvsadm -Ln --stats --exact | awk '$1 == "TCP" || $1 == "UDP" { print $2, $3 }'
}
# The services are new, but IPVS may hand back counters with them: count from here.
conns_now >"$LAB_TMP/conns-before"

START=$(uptime_cs)
DEADLINE=$((START + MINUTES * 6000))

# client_loop TAG NETNS LAB-NET-ARGS...: runs of 20 connections until the deadline.
client_loop() {
    _tag=$1
    _ns=$2
    shift 2
    while [ "$(uptime_cs)" -lt "$DEADLINE" ]; do
        nsenter --net="/run/netns/$_ns" lab-net connect "$@" --count 20 --interval-ms 60 \
            --timeout-ms 2000 >>"$LAB_TMP/loop-$_tag.out" 2>>"$LAB_TMP/loop-$_tag.err" || true
    done
}
LOOPS=
client_loop web1 soakc1 --to 172.31.1.1:80 &
LOOPS="$LOOPS $!"
client_loop web2 soakc2 --to 172.31.1.1:80 --rst &
LOOPS="$LOOPS $!"
client_loop api soakc3 --to 172.31.1.2:80 &
LOOPS="$LOOPS $!"
client_loop sess1 soakc4 --to 172.31.1.3:80 &
LOOPS="$LOOPS $!"
client_loop sess2 soakc5 --to 172.31.1.3:80 &
LOOPS="$LOOPS $!"
client_loop dns soakc6 --to 172.31.1.4:53 --udp &
LOOPS="$LOOPS $!"
for p in $LOOPS; do echo "$p" >>"$LAB_PIDS"; done
lab_log "six client loops for $MINUTES min; churn every $CHURN_S s"

# churn STEP: in each pool the pod out since the previous step comes back, the next one goes;
# wrr weights change; soak/web's EndpointSlice follows on the API server.
churn() {
    echo "$SERVICES" | while read -r line; do
        svc_fields "$line"
        _back=$((($1 - 1) % pool + 1))
        _out=$(($1 % pool + 1))
        ipvsadm -a $flag "$vip:$port" -r "$prefix.$_back:$bport" -m -w "$(weight "$name" "$1" "$_back")"
        ipvsadm -d $flag "$vip:$port" -r "$prefix.$_out:$bport"
        case $name in
        api | dns)
            _i=1
            while [ "$_i" -le "$pool" ]; do
                [ "$_i" -eq "$_back" ] || [ "$_i" -eq "$_out" ] ||
                    ipvsadm -e $flag "$vip:$port" -r "$prefix.$_i:$bport" -m -w "$(weight "$name" "$1" "$_i")"
                _i=$((_i + 1))
            done
            ;;
        esac
    done
    web_slice "$1" >"$LAB_TMP/web-slice.json"
    kube_apply "$LAB_TMP/web-slice.json"
}

step=0
next_sample=$START
next_churn=$((START + CHURN_S * 100))
now=$START
crashed=0
while [ "$now" -lt "$DEADLINE" ]; do
    if [ "$now" -ge "$next_sample" ]; then
        if ! kill -0 "$TRACER" 2>/dev/null; then
            lab_log "the tracer is gone $(((now - START) / 100)) s into the soak"
            crashed=1
            break
        fi
        echo "bench: soak t=$(((now - START) / 100)) rss_kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$TRACER/status")"
        next_sample=$((next_sample + SAMPLE_S * 100))
    fi
    if [ "$now" -ge "$next_churn" ]; then
        step=$((step + 1))
        churn "$step"
        next_churn=$((next_churn + CHURN_S * 100))
    fi
    sleep 1
    now=$(uptime_cs)
done
for p in $LOOPS; do wait "$p" || true; done
lab_log "client loops done after $((($(uptime_cs) - START) / 100)) s, $step churn steps"
if kill -0 "$TRACER" 2>/dev/null; then
    echo "bench: soak t=$((($(uptime_cs) - START) / 100)) rss_kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$TRACER/status")"
fi
ipvsadm -Ln
IPVS_SNAPSHOT_AT=$(uptime_cs)
ipvs_settle
conns_now >"$LAB_TMP/conns-after"

# The tracer has had the settle's 3 s to drain the ring; SIGINT, its summary, its status.
kill -INT "$TRACER" 2>/dev/null || true
n=400
while [ "$n" -gt 0 ] && kill -0 "$TRACER" 2>/dev/null; do
    usleep 50000
    n=$((n - 1))
done
if kill -0 "$TRACER" 2>/dev/null; then
    lab_log "ipvs-trace still running 20 s after SIGINT: killing it"
    kill -KILL "$TRACER"
fi
status=0
wait "$TRACER" || status=$?
[ "$crashed" -eq 0 ] || [ "$status" -ne 0 ] || status=125
sed -n '/^ipvs-trace summary/,$p' "$LAB_TMP/soak.stderr" | head -40
grep -v '^ipvs-trace: \(tracing\|kubernetes names synced\)' "$LAB_TMP/soak.stderr" |
    sed -n '1,/^ipvs-trace summary/p' | grep -v '^ipvs-trace summary' | head -20 || true

OUT=$LAB_TMP/soak.out
lab_log "$(wc -l <"$OUT") JSON lines"
echo "$SERVICES" | while read -r line; do
    svc_fields "$line"
    before=$(awk -v vs="$vip:$port" '$1 == vs { print $2 }' "$LAB_TMP/conns-before")
    after=$(awk -v vs="$vip:$port" '$1 == vs { print $2 }' "$LAB_TMP/conns-after")
    grep -F "\"vip\":\"$vip:$port\"" "$OUT" >"$LAB_TMP/vip.out" || true
    new=$(grep -c '"event":"new"' "$LAB_TMP/vip.out" || true)
    template=$(grep -c '"event":"template"' "$LAB_TMP/vip.out" || true)
    named=$(grep '"event":"new"' "$LAB_TMP/vip.out" | grep -c '"service":"soak/web' || true)
    echo "bench: soak service=$name proto=$proto vip=$vip:$port sched=$sched${extra:+-persistent} conns=$((after - before)) new=$new template=$template named=$named"
done

summary=0
grep -q '^ipvs-trace summary' "$LAB_TMP/soak.stderr" && summary=1
counts=$(sed -n 's/^ *events: new=\([0-9]*\) template=\([0-9]*\) reused=\([0-9]*\) no_dest=\([0-9]*\).*/new=\1 template=\2 reused=\3 no_dest=\4/p' "$LAB_TMP/soak.stderr")
lost=$(sed -n 's/^ *lost: \([0-9]*\) .*malformed: \([0-9]*\).*/lost=\1 malformed=\2/p' "$LAB_TMP/soak.stderr")
ok=$(cat "$LAB_TMP"/loop-*.out | grep -c ' ok$' || true)
failed=$(cat "$LAB_TMP"/loop-*.out | grep -c ' error ' || true)
for f in "$LAB_TMP"/loop-*.out; do
    # A UDP client's port may come round again while IPVS still holds its entry (300 s): that
    # datagram reuses the entry, is not scheduled, and is no event.
    lab_log "$(basename "$f" .out): $(grep -c ' ok$' "$f" || true) ok, $(grep -c ' error ' "$f" || true) failed"
done
cat "$LAB_TMP"/loop-*.out | sed -n 's/^[^ ]* [^ ]* error //p' | sort | uniq -c | sort -rn | head -5
echo "bench: soak status=$status summary=$summary ${counts:-new=0 template=0 reused=0 no_dest=0} ${lost:-lost=0 malformed=0} churn=$step clients_ok=$ok clients_failed=$failed"
