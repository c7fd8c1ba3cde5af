#!/bin/sh
# persistent: `ipvsadm -p 60` (what kube-proxy programs for sessionAffinity: ClientIP), rr over
# 3 pods; 3 clients, 20 connections each. Asserted: one `template` event per client, every
# connection of a client on its template's pod, each event equal to the kernel's entry.
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.20
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr -p 60
for i in 1 2 3; do
    mk_pod pod$i 10.245.4.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.4.$i:8080 -m -w 1
done
for i in 1 2 3; do
    mk_client client$i 198.51.100.1$i
done

start_trace trace
for i in 1 2 3; do
    client_start client$i client$i --to $VIP:80 --count 20
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 63
dump_clients
dump_stats
