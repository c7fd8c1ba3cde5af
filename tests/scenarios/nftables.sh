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
set -e
. /lab/lib.sh
node_setup
kp_seed_scenario nftables
