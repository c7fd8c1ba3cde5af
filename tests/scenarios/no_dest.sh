#!/bin/sh
# no_dest: two services without a usable real server, as kube-proxy leaves them: one with no
# endpoints at all, one whose only endpoint is terminating (weight 0). IPVS answers each SYN
# with an ICMP port unreachable, so every connect is refused at once. Asserted: one `no_dest`
# event per refused connect with the exact client ip:port and VIP, no `new`, no kernel entry.
set -e
. /lab/lib.sh
node_setup
# IPVS refuses with ICMP, which the kernel rate-limits per peer (burst 6): unlimited, so each
# SYN is refused at once instead of some being retransmitted a second later.
echo 0 >/proc/sys/net/ipv4/icmp_ratelimit

EMPTY=172.31.0.31
DRAINING=172.31.0.32
add_vip $EMPTY
add_vip $DRAINING
ipvsadm -A -t $EMPTY:80 -s rr
ipvsadm -A -t $DRAINING:80 -s rr
mk_pod pod1 10.245.6.1 8080
ipvsadm -a -t $DRAINING:80 -r 10.245.6.1:8080 -m -w 0
mk_client client1 198.51.100.11

start_trace trace
# Fixed source ports, so the events' client ip:port can be checked exactly.
client_start empty client1 --to $EMPTY:80 --count 4 --bind 198.51.100.11:41000
client_wait && die "connections to a service without endpoints succeeded"
client_start draining client1 --to $DRAINING:80 --count 4 --bind 198.51.100.11:41001
client_wait && die "connections to a service with only a weight-0 endpoint succeeded"
dump_ipvs
stop_trace 8
dump_clients
dump_stats
