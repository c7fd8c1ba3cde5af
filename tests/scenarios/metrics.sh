#!/bin/sh
# metrics: `ipvs-trace serve` as the DaemonSet runs it, scraped over HTTP with busybox wget.
# Two services: the seed cluster's http port (rr over its three pods, named from the seed
# snapshot; 9 connections to the ClusterIP from the client pod, 3 to the LoadBalancer IP from
# outside) and a plain wrr 2:1 service no snapshot knows (12 connections, by address).
# Asserted: every connection counter equals the kernel's Conns (ipvsadm -Ln --stats) per
# backend (the named Service summed over its two VIPs), nothing lost, unreadable or
# malformed, /healthz ready, the table metrics equal ipvsadm's weights and counters, nothing
# printed on stdout, and SIGTERM ends it with status 0 and the summary. The scrape passes
# `promtool check metrics` (promtool is copied into the boots that run this scenario).
set -e
. /lab/lib.sh
node_setup
seed_node

# Addresses no other scenario uses: a real server deleted while its entries linger goes to
# IPVS's trash and comes back, counters and all, when the same VIP and address are added again
# (5.10 counted nat's connections here: --stats 9/5 for 8/4 scheduled).
VIP=172.31.0.80
add_vip $VIP
ipvsadm -A -t $VIP:80 -s wrr
mk_pod mpod1 10.245.17.1 8080
mk_pod mpod2 10.245.17.2 8080
ipvsadm -a -t $VIP:80 -r 10.245.17.1:8080 -m -w 2
ipvsadm -a -t $VIP:80 -r 10.245.17.2:8080 -m -w 1
mk_client mclient 198.51.100.70

# check_metrics FILE: promtool's lint of a scrape, or the scenario fails with its complaints.
# promtool 2.42 reads the classic text format, where a counter's family is named with its
# _total; OpenMetrics (what serve sends) names the family without it (`# TYPE x counter`,
# sample `x_total`). Renaming the HELP and TYPE lines of counters to their sample's name and
# dropping `# EOF` gives the classic text of the same metrics: unchanged, promtool would say
# "no help text" of every counter. A counter sample without _total is still caught (its
# family then has no HELP).
check_metrics() {
    command -v promtool >/dev/null ||
        die "promtool is not in the guest: tests/src/lab.rs adds it to boots that run metrics"
    awk '
        /^# EOF$/ { next }
        /^# HELP / { if (help != "") print help; help = $0; next }
        /^# TYPE / && $4 == "counter" {
            head = "# HELP " $3 " "
            if (substr(help, 1, length(head)) == head) {
                print "# HELP " $3 "_total " substr(help, length(head) + 1)
                help = ""
            }
            if (help != "") { print help; help = "" }
            print "# TYPE " $3 "_total counter"
            next
        }
        { if (help != "") { print help; help = "" } print }
        END { if (help != "") print help }
    ' "$1" >"$LAB_TMP/metrics-classic.txt"
    _st=0
    promtool check metrics <"$LAB_TMP/metrics-classic.txt" >"$LAB_TMP/promtool.out" 2>&1 || _st=$?
    if [ "$_st" -ne 0 ] || [ -s "$LAB_TMP/promtool.out" ]; then
        cat "$LAB_TMP/promtool.out"
        die "promtool check metrics: status $_st on serve's /metrics (its complaints above)"
    fi
    lab_log "promtool check metrics: clean, $(grep -c '^# TYPE' "$1") metric families," \
        "$(grep -c -v '^#' "$1") samples"
}

METRICS=127.0.0.1:9808
serve_start serve --metrics-addr $METRICS --kube-snapshot /lab/fixtures/seed-snapshot.json
dump healthz wget -q -O - "http://$METRICS/healthz"

client_start seed client-pod --to $SEED_CLUSTER_IP:80 --count 9
client_start lb outside --to $SEED_EXTERNAL_IP:80 --count 3
client_start wrr mclient --to $VIP:80 --count 12
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
dump_clients
dump_stats
# The drop counters reach the metrics once a second, the table metrics' read is at most a
# second old: two seconds after the settled stats, both are of the same moment as them.
sleep 2
wget -q -O "$LAB_TMP/metrics.txt" "http://$METRICS/metrics" || die "scraping /metrics failed"
dump metrics cat "$LAB_TMP/metrics.txt"
check_metrics "$LAB_TMP/metrics.txt"

# One that ignores SIGTERM must not hang the boot: serve_stop kills it after 20 s (and the
# test fails on its status).
serve_stop serve
