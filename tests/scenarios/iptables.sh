#!/bin/sh
# iptables: kube-proxy in iptables mode makes the decision (`-m statistic --mode random` rules
# in its KUBE-SVC chains, written with iptables-restore through iptables-nft as its proxier
# writes them: tests/lib/lab.sh, kp_*), on the seed cluster's Service, names from the lab's
# API server. kp_seed_scenario says what runs: 486 connections under `trace`, `balance
# --check` over 300 of them, then a window in which pod dgzsm's endpoint leaves the Service.
# Asserted: as in nftables.sh, with dataplane iptables (iptables-nft runs in nf_tables too:
# the tool tells the modes apart by where the VIP is programmed, KUBE-SERVICES here).
set -e
. /lab/lib.sh
node_setup
kp_seed_scenario iptables
