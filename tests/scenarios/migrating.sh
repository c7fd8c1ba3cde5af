#!/bin/sh
# migrating: a node half-way through a change of kube-proxy's mode, all three dataplanes at
# once for different VIPs, over the same 3 pods: IPVS virtual services (rr, Masq, the VIP on
# kube-ipvs0), kube-proxy's nftables rules, and the iptables-mode rules (iptables-nft) a node
# keeps until they are cleaned up:
#   ipvs      172.31.0.80:80
#   nftables  172.31.0.81:80  mig/web:http
#   iptables  172.31.0.82:80  mig/old:http
# One `trace` (every dataplane: the default) over 30 connections to each VIP from each of two
# clients at once, one outside the cluster (masqueraded by the netfilter modes) and one in it;
# then `trace --dataplane nftables` over 10 more to each VIP.
# Asserted: each event carries its VIP's dataplane; IPVS events equal their `ipvsadm -Lnc`
# entries, netfilter ones their `conntrack -L` entries; exactly one event per connection (the
# IPVS connections pass netfilter's NAT hooks too, as null bindings, and must not count
# again); the narrowed trace has the nftables connections only; `rules -o json` shows each
# service with its dataplane. Then `who` with no serve for mclient1: both tables answer (the IPVS
# table and conntrack's DNAT entries), each connection once with its dataplane.
set -e
. /lab/lib.sh
node_setup
kp_setup nftables
kp_setup iptables

PODS="10.245.9.1:8080 10.245.9.2:8080 10.245.9.3:8080"
for i in 1 2 3; do
    mk_pod mpod$i 10.245.9.$i 8080
done
add_vip 172.31.0.80
ipvsadm -A -t 172.31.0.80:80 -s rr
for pod in $PODS; do
    ipvsadm -a -t 172.31.0.80:80 -r "$pod" -m -w 1
done
# shellcheck disable=SC2086 # one endpoint per word
kp_service nftables mig/web:http tcp 172.31.0.81:80 $PODS
# shellcheck disable=SC2086 # one endpoint per word
kp_service iptables mig/old:http tcp 172.31.0.82:80 $PODS
mk_client mclient1 198.51.100.91
mk_client mclient2 10.245.97.91
dump_rules_json rules.json

start_trace trace
for vip in 80 81 82; do
    client_start all-$vip-1 mclient1 --to 172.31.0.$vip:80 --count 30
    client_start all-$vip-2 mclient2 --to 172.31.0.$vip:80 --count 30
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns
dump_conntrack conntrack
stop_trace 180

start_trace narrowed --dataplane nftables
for vip in 80 81 82; do
    client_start narrowed-$vip mclient1 --to 172.31.0.$vip:80 --count 10
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns-narrowed
dump_conntrack conntrack-narrowed
stop_trace 10
dump_conns conns-who
dump_conntrack conntrack-who
dump who-client ipvs-trace who -o json --limit 100000 198.51.100.91
dump_clients
dump_netfilter
