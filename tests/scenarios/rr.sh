#!/bin/sh
# rr: a ClusterIP-style service, round robin over 3 pods, Masq; 300 TCP connections from 3
# client netns at once. Asserted: every `new` event equals the kernel's entry for that
# connection, exactly 100 per pod, nothing lost, events = connections = IPVS's Conns.
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.10
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr
for i in 1 2 3; do
    mk_pod pod$i 10.245.1.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.1.$i:8080 -m -w 1
done
for i in 1 2 3; do
    mk_client client$i 198.51.100.1$i
done

start_trace trace
for i in 1 2 3; do
    client_start client$i client$i --to $VIP:80 --count 100
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 300
dump_clients
dump_stats
