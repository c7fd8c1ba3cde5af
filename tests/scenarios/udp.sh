#!/bin/sh
# udp: a kube-dns-like service, 53/UDP and 53/TCP on one ClusterIP, 2 "coredns" pods; 40 UDP
# queries (each from a fresh socket, so a fresh IPVS entry) and 6 TCP connections, traced with
# --proto udp. Asserted: 40 UDP `new` events equal to the kernel's UDP entries, 20 per pod,
# no TCP event.
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.53
add_vip $VIP
ipvsadm -A -u $VIP:53 -s rr
ipvsadm -A -t $VIP:53 -s rr
for i in 1 2; do
    mk_pod coredns$i 10.245.3.$i 53/udp 53
    ipvsadm -a -u $VIP:53 -r 10.245.3.$i:53 -m -w 1
    ipvsadm -a -t $VIP:53 -r 10.245.3.$i:53 -m -w 1
done
mk_client client1 198.51.100.11
mk_client client2 198.51.100.12

start_trace trace --proto udp
client_start udp1 client1 --udp --to $VIP:53 --count 20
client_start udp2 client2 --udp --to $VIP:53 --count 20
client_start tcp1 client1 --to $VIP:53 --count 6
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 40
dump_clients
dump_stats
