#!/bin/sh
# reuse: with net.ipv4.vs.conn_reuse_mode=0, a client reconnecting from the same ip:port (RST
# close, so no TIME_WAIT) hits its existing IPVS entry: no scheduling, the same pod. client1
# does that 5 times, traced with --client; client2 makes 3 ordinary connections the filter must
# hide. Asserted: 1 `new` + 4 `reused` on one pod, equal to the kernel's single entry, and
# IPVS's Conns counting the 1 + 3 scheduled connections only. Then the same 5 reconnections
# from another port traced with `--event new`: the per-packet probe is not attached, the trace
# has the 1 `new` only, and the kernel served all 5 (its entry, Conns one more).
set -e
. /lab/lib.sh
node_setup
echo 0 >/proc/sys/net/ipv4/vs/conn_reuse_mode

VIP=172.31.0.30
add_vip $VIP
ipvsadm -A -t $VIP:80 -s rr
for i in 1 2; do
    mk_pod pod$i 10.245.5.$i 8080
    ipvsadm -a -t $VIP:80 -r 10.245.5.$i:8080 -m -w 1
done
mk_client client1 198.51.100.11
mk_client client2 198.51.100.12
dump_attach

start_trace trace --client 198.51.100.11
client_start reuse client1 --to $VIP:80 --count 5 --bind 198.51.100.11:30000 --rst --interval-ms 100
client_start other client2 --to $VIP:80 --count 3
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 5
dump_stats

start_trace trace_new --client 198.51.100.11 --event new
client_start reuse_new client1 --to $VIP:80 --count 5 --bind 198.51.100.11:30001 --rst --interval-ms 100
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs new
stop_trace 1
dump_clients
dump_stats new
