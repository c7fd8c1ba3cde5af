#!/bin/sh
# filter: three rr services, 20 connections to each, traced with --vip on the second. The
# probes leave the other two services' decisions out before reserving a record (the kernel-side
# filter). Asserted: the events are the kernel's entries for that VIP only, and the summary's
# kernel line adds up: seen = filtered_out + matched = the Conns of all three, matched = 20.
set -e
. /lab/lib.sh
node_setup

for n in 1 2 3; do
    VIP=172.31.0.4$n
    add_vip $VIP
    ipvsadm -A -t $VIP:80 -s rr
    for i in 1 2; do
        mk_pod pod$n$i 10.245.4$n.$i 8080
        ipvsadm -a -t $VIP:80 -r 10.245.4$n.$i:8080 -m -w 1
    done
done
mk_client client1 198.51.100.41

start_trace trace --vip 172.31.0.42:80
for n in 1 2 3; do
    client_start vip$n client1 --to 172.31.0.4$n:80 --count 20
done
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 20
dump_clients
dump_stats
