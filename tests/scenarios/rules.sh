#!/bin/sh
# rules: `ipvs-trace rules` against the kernel's own `ipvsadm -Ln` and `ipvsadm -Ln --stats
# --exact`, on a node with one virtual service of each kind: TCP rr, TCP wrr 3:2:1, UDP lc with
# weights 1:2, TCP sh persistent (-p 60, mask 255.255.255.0, sh-port), a firewall-mark
# service, an IPv6 service (table only, no traffic), and the seed cluster's Services (named
# from its snapshot, and from a live API server serving it). Traffic first, so that counters are not zero; once IPVS's counters have
# settled: ipvsadm, the ipvs-trace views, ipvsadm again (asserted unchanged, so the views are
# compared with one state of the kernel). Last, with ip_vs unloaded: the error says what to do.
#
# With RULES_RECORD=DIR, also records the raw netlink replies (--debug-dump-netlink) and prints
# them base64-encoded between `@@NETLINK name@@` and `@@END NETLINK@@` lines: the material of
# the decoder's unit tests (ipvs-trace/tests/netlink/).
set -e
. /lab/lib.sh
node_setup

for vip in 172.31.0.60 172.31.0.61 172.31.0.62 172.31.0.63; do
    add_vip $vip
done
mk_pod rpod1 10.245.6.1 8080 53/udp
mk_pod rpod2 10.245.6.2 8080 53/udp
mk_pod rpod3 10.245.6.3 8080

ipvsadm -A -t 172.31.0.60:80 -s rr
ipvsadm -A -t 172.31.0.61:80 -s wrr
ipvsadm -A -t 172.31.0.63:80 -s sh -b sh-port -p 60 -M 255.255.255.0
w=3
for i in 1 2 3; do
    ipvsadm -a -t 172.31.0.60:80 -r 10.245.6.$i:8080 -m -w 1
    ipvsadm -a -t 172.31.0.61:80 -r 10.245.6.$i:8080 -m -w $w
    ipvsadm -a -t 172.31.0.63:80 -r 10.245.6.$i:8080 -m -w 1
    w=$((w - 1))
done
ipvsadm -A -u 172.31.0.62:53 -s lc
ipvsadm -a -u 172.31.0.62:53 -r 10.245.6.1:53 -m -w 1
ipvsadm -a -u 172.31.0.62:53 -r 10.245.6.2:53 -m -w 2
# A firewall-mark service (kube-proxy does not make them; keepalived setups do): no traffic,
# nothing here marks packets.
ipvsadm -A -f 5 -s rr
ipvsadm -a -f 5 -r 10.245.6.1:8080 -m -w 1
ipvsadm -a -f 5 -r 10.245.6.3:8080 -m -w 4
# IPv6: a VIP on kube-ipvs0 and two real servers, one of weight 0 (a terminating endpoint).
$IP -6 addr add fd00:31::64/128 dev kube-ipvs0
ipvsadm -A -t "[fd00:31::64]:80" -s rr
ipvsadm -a -t "[fd00:31::64]:80" -r "[fd00:245::1]:8080" -m -w 1
ipvsadm -a -t "[fd00:31::64]:80" -r "[fd00:245::2]:8080" -m -w 0

seed_node

mk_client rclient1 198.51.100.31
mk_client rclient2 198.51.100.32
client_start rr rclient1 --to 172.31.0.60:80 --count 9
client_start wrr rclient2 --to 172.31.0.61:80 --count 12
client_start udp rclient1 --udp --to 172.31.0.62:53 --count 6
client_start sh1 rclient1 --to 172.31.0.63:80 --count 4
client_start sh2 rclient2 --to 172.31.0.63:80 --count 4
client_start seed client-pod --to $SEED_CLUSTER_IP:80 --count 3
client_wait || lab_log "some connections failed (see the client dumps)"
dump_clients
# IPVS folds its per-CPU counters into what netlink reports every 2 s (see dump_stats).
IPVS_SNAPSHOT_AT=$(uptime_cs)
ipvs_settle

SNAPSHOT=/lab/fixtures/seed-snapshot.json
dump rules-before ipvsadm -Ln
dump stats-before ipvsadm -Ln --stats --exact
dump rules.json ipvs-trace rules -o json --kube-snapshot $SNAPSHOT
# The same names from a live API server (the watches must sync before the table prints).
kube_apiserver_start $SNAPSHOT
dump rules-live.json sh -c \
    "ipvs-trace rules -o json --kubeconfig $LAB_KUBECONFIG 2>$LAB_TMP/rules-live.stderr"
dump rules-live.stderr cat "$LAB_TMP/rules-live.stderr"
dump rules.table ipvs-trace rules --kube-snapshot $SNAPSHOT
dump rules-stats.table ipvs-trace rules --stats --no-kube
dump rules-service.json ipvs-trace rules -o json --kube-snapshot $SNAPSHOT \
    --service ratel/vpaas-demo-prod:http
dump rules-backend.json ipvs-trace rules -o json --no-kube --backend 10.245.6.2 --proto tcp
# Without CAP_NET_ADMIN over this network namespace (a new user namespace has none there).
dump rules-eperm unshare -U ipvs-trace rules --no-kube

if [ -n "${RULES_RECORD:-}" ]; then
    ipvs-trace rules --no-kube --debug-dump-netlink "$RULES_RECORD" >/dev/null
    for f in "$RULES_RECORD"/*.bin; do
        echo "@@NETLINK $(basename "$f")@@"
        base64 "$f"
        echo "@@END NETLINK@@"
    done
    dump rate ipvsadm -Ln --rate --exact
fi

dump rules ipvsadm -Ln
dump stats ipvsadm -Ln --stats --exact

# Without ip_vs: what to do. (node_reset, at the end, loads it again if this fails half-way.)
node_teardown
/lab/unload-ipvs.sh || die "cannot unload ip_vs"
mkdir -p "$LAB_TMP"
: >"$LAB_PIDS"
dump rules-unloaded ipvs-trace rules --no-kube
/lab/load-ipvs.sh || die "cannot load ip_vs"
