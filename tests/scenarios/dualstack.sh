#!/bin/sh
# dualstack: one dual-stack Service as kube-proxy programs it: a v4 ClusterIP and a v6
# ClusterIP, each its own virtual service (rr, Masq) over the same 3 pods' v4 resp. v6
# addresses. client1 (dual-stack) dials both VIPs, client2 only the v6 one. Asserted: each
# event carries the family and addresses of the kernel's entry, per VIP as many events as
# connections and as IPVS's Conns, rr even; the table prints IPv6 as [addr]:port; an IPv6
# client reconnecting from one port is traced as 1 new + 2 reused (the per-packet probe on an
# IPv6 header, the kernel-side filter on an IPv6 address).
set -e
. /lab/lib.sh
node_setup

VIP4=172.31.0.60
VIP6=fd00:31::60
add_vip $VIP4
add_vip6 $VIP6
ipvsadm -A -t $VIP4:80 -s rr
ipvsadm -A -t "[$VIP6]:80" -s rr
for i in 1 2 3; do
    mk_pod6 pod$i 10.245.9.$i fd00:245:9::$i 8080
    ipvsadm -a -t $VIP4:80 -r 10.245.9.$i:8080 -m -w 1
    ipvsadm -a -t "[$VIP6]:80" -r "[fd00:245:9::$i]:8080" -m -w 1
done
mk_client6 client1 198.51.100.61 fd00:198:51::61
mk_client6 client2 198.51.100.62 fd00:198:51::62

start_trace trace
client_start v4-client1 client1 --to $VIP4:80 --count 30
client_start v6-client1 client1 --to "[$VIP6]:80" --count 30
client_start v6-client2 client2 --to "[$VIP6]:80" --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 90
dump_stats

# The table layout, after the counters are taken: two more v6 connections.
TRACE_FORMAT=table start_trace table
client_start table-client2 client2 --to "[$VIP6]:80" --count 2
client_wait || lab_log "some connections failed (see the client dumps)"
# The header and one line per connection.
stop_trace 3

# IPv6 reuse, through the kernel-side filter on an IPv6 client: client1 reconnects 3 times from
# one v6 ip:port (RST close, conn_reuse_mode=0): 1 new + 2 reused on one pod.
echo 0 >/proc/sys/net/ipv4/vs/conn_reuse_mode
TRACE_FORMAT=json start_trace reuse6 --client fd00:198:51::61
client_start reuse6 client1 --to "[$VIP6]:80" --count 3 --bind "[fd00:198:51::61]:30600" --rst --interval-ms 100
client_wait || lab_log "some connections failed (see the client dumps)"
stop_trace 3
dump_clients
