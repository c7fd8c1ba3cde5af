#!/bin/sh
# builtin: a node whose ip_vs carries no BTF (Debian 5.10; elsewhere /sys/kernel/btf is masked
# to vmlinux only), traced WITHOUT --btf: the built-in 5.x/6.x layout of struct ip_vs_conn, the
# scheduler and each backend's weight from the IPVS tables over netlink.
#   wrr:     weights 3/2/1 over 3 pods, 60 connections from 2 clients (30/20/10, exact)
#   reuse:   conn_reuse_mode=0, one client ip:port reconnecting 4 times (1 new + 4 reused)
#   no_dest: a service without real servers, 3 refused connects from fixed ports
#   check:   `ipvs-trace check` without module BTF (ready, degraded; golden per release)
# On 7.x, whose ip_vs_conn has another layout, the trace must refuse with a clear error.
set -e
. /lab/lib.sh
node_setup
echo 0 >/proc/sys/net/ipv4/vs/conn_reuse_mode
echo 0 >/proc/sys/net/ipv4/icmp_ratelimit
# No --btf from the lab either: this scenario is about running without one.
LAB_IP_VS_BTF=

dump release uname -r
# /sys/kernel/btf as on a kernel built without module BTF: vmlinux only.
mkdir -p /tmp/builtin-btf
cp /sys/kernel/btf/vmlinux /tmp/builtin-btf/ || die "cannot save vmlinux BTF"
mount -t tmpfs lab-btf /sys/kernel/btf || die "cannot mount over /sys/kernel/btf"
cp /tmp/builtin-btf/vmlinux /sys/kernel/btf/vmlinux
dump check ipvs-trace check

case $(uname -r) in
7.*)
    dump nobtf timeout 20 ipvs-trace trace -o json
    umount /sys/kernel/btf
    exit 0
    ;;
esac

WRR=172.31.0.60
REUSE=172.31.0.61
EMPTY=172.31.0.62
add_vip $WRR
add_vip $REUSE
add_vip $EMPTY
ipvsadm -A -t $WRR:80 -s wrr
for i in 1 2 3; do
    mk_pod pod$i 10.245.14.$i 8080
    ipvsadm -a -t $WRR:80 -r 10.245.14.$i:8080 -m -w $((4 - i))
done
ipvsadm -A -t $REUSE:80 -s rr
ipvsadm -a -t $REUSE:80 -r 10.245.14.1:8080 -m -w 1
ipvsadm -a -t $REUSE:80 -r 10.245.14.2:8080 -m -w 1
ipvsadm -A -t $EMPTY:80 -s rr
mk_client client1 198.51.100.11
mk_client client2 198.51.100.12

start_trace trace
client_start wrr1 client1 --to $WRR:80 --count 30
client_start wrr2 client2 --to $WRR:80 --count 30
client_wait || lab_log "some connections failed (see the client dumps)"
client_start reuse client1 --to $REUSE:80 --count 5 --bind 198.51.100.11:30000 --rst --interval-ms 100
client_wait || lab_log "some reconnects failed (see the client dumps)"
client_start empty client2 --to $EMPTY:80 --count 3 --bind 198.51.100.12:41000
client_wait && die "connections to a service without real servers succeeded"
dump_ipvs
stop_trace 68
umount /sys/kernel/btf
dump_clients
dump_stats
