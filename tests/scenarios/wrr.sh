#!/bin/sh
# wrr: weighted round robin 3:2:1 over 3 pods; 600 TCP connections from 3 client netns,
# traced with a --vip filter. Asserted: exactly 300/200/100, each event equal to the kernel's
# entry, the dest weight carried by each event.
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.11
add_vip $VIP
ipvsadm -A -t $VIP:80 -s wrr
w=3
for i in 1 2 3; do
    mk_pod pod$i 10.245.2.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.2.$i:8080 -m -w $w
    w=$((w - 1))
done
for i in 1 2 3; do
    mk_client client$i 198.51.100.1$i
done

start_trace trace --vip $VIP:80
for i in 1 2 3; do
    client_start client$i client$i --to $VIP:80 --count 200
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 600
dump_clients
dump_stats
