#!/bin/sh
# nftables: kube-proxy in nftables mode makes the decision (`numgen random` in its
# `table ip kube-proxy`, written as its proxier writes it: tests/lib/lab.sh, kp_*), on the seed
# cluster's Service, names from the lab's API server. kp_seed_scenario says what runs: 486
# connections under `trace`, `balance --check` over 300 of them, then a window in which pod
# dgzsm's endpoint leaves the Service.
# Asserted: each `new` event equals its conntrack entry (original destination = the VIP, reply
# source = the endpoint) and carries dataplane nftables, scheduler random and nulls for what
# netfilter has not (fwd, weight, counters); one event per connection; counts per endpoint from
# the events equal conntrack's; the Service's names; balance passes the first window and names
# the removed endpoint in the second; `rules -o json` shows the programmed endpoints.
# Then `who` with no serve running (this node has no IPVS connection): conntrack's DNAT entries
# answer, each line equal to its conntrack entry (reply source = backend), named, nftables.
set -e
. /lab/lib.sh
node_setup
kp_seed_scenario nftables

# who without a serve: two of the connections to the ClusterIP by client ip:port, and the
# Service's, between two listings of the table (TIME_WAIT entries may leave between them);
# names from the seed's snapshot (cheaper in guest time than each who syncing its own watches
# of the API server).
conntrack -L -f ipv4 -o extended 2>/dev/null >"$LAB_TMP/conntrack-who"
dump conntrack-who cat "$LAB_TMP/conntrack-who"
dump who-each sh -c 'for c in $(sed -n "s/.* src=\([0-9.]*\) dst=$1 sport=\([0-9]*\) dport=80 .*/\1:\2/p" "$0" |
    awk "NR % 240 == 1"); do ipvs-trace who -o json --kube-snapshot "$2" "$c" || echo "@ status $?"; done' \
    "$LAB_TMP/conntrack-who" $SEED_CLUSTER_IP /lab/fixtures/seed-snapshot.json
dump who-service ipvs-trace who -o json --limit 100000 --kube-snapshot /lab/fixtures/seed-snapshot.json \
    --service ratel/vpaas-demo-prod:http
dump_conntrack conntrack-who-after
