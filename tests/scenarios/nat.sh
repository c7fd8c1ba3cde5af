#!/bin/sh
# nat: `trace --nat` on Masq services with net.ipv4.vs.conntrack=1 (node_setup sets it, as
# kube-proxy does): a v4 TCP, a v4 UDP and a v6 TCP virtual service (rr) over 3 dual-stack
# pods; 20 + 20 v4 TCP, 6 UDP and 10 v6 TCP connections from two clients. The kernel's two
# views are dumped right after the traffic, while every entry is still listed (TCP TIME_WAIT
# 2 min in both tables, UDP 30 s): `ipvsadm -Lnc` and `conntrack -L -o extended` (both
# families). Asserted: each event's `nat` tuples equal those views. Then, with
# net.ipv4.vs.conntrack=0, 3 more connections: the translation is still shown, conntrack
# entries are said to be unavailable, once, with the reason.
#
# With NAT_RECORD=DIR, the first trace also records the raw ctnetlink replies
# (--debug-dump-netlink) and prints them base64-encoded between `@@NETLINK name@@` and
# `@@END NETLINK@@` lines: the material of the decoder's unit tests
# (ipvs-trace/tests/conntrack/).
set -e
. /lab/lib.sh
node_setup

VIP=172.31.0.70
VIP6=fd00:31::70
add_vip $VIP
add_vip6 $VIP6
ipvsadm -A -t $VIP:80 -s rr
ipvsadm -A -u $VIP:53 -s rr
ipvsadm -A -t "[$VIP6]:80" -s rr
for i in 1 2 3; do
    mk_pod6 natpod$i 10.245.7.$i fd00:245:7::$i 8080 5353/udp
    ipvsadm -a -t $VIP:80 -r 10.245.7.$i:8080 -m -w 1
    ipvsadm -a -u $VIP:53 -r 10.245.7.$i:5353 -m -w 1
    ipvsadm -a -t "[$VIP6]:80" -r "[fd00:245:7::$i]:8080" -m -w 1
done
# Netfilter tracks a namespace's connections only once something there asks for it: on a
# kube-proxy node, its iptables rules (conntrack matches, MASQUERADE). The lab has no
# iptables; IPVS itself asks for it for a Masq service on port 21, for its FTP NAT
# (ip_vs_register_conntrack, 5.x to 7.x). One per family, without traffic, stands in for
# kube-proxy's rules while the scenario runs (node_teardown removes them).
ipvsadm -A -t $VIP:21 -s rr
ipvsadm -a -t $VIP:21 -r 10.245.7.1:21 -m
ipvsadm -A -t "[$VIP6]:21" -s rr
ipvsadm -a -t "[$VIP6]:21" -r "[fd00:245:7::1]:21" -m
mk_client6 natclient1 198.51.100.71 fd00:198:51::71
mk_client natclient2 198.51.100.72

start_trace trace --nat ${NAT_RECORD:+--debug-dump-netlink "$NAT_RECORD"}
client_start v4-client1 natclient1 --to $VIP:80 --count 20
client_start v4-client2 natclient2 --to $VIP:80 --count 20
client_start udp-client2 natclient2 --udp --to $VIP:53 --count 6
client_start v6-client1 natclient1 --to "[$VIP6]:80" --count 10
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns
# stdout only: the tool's count line on stderr would land inside a line of the listing.
dump conntrack4 sh -c 'conntrack -L -f ipv4 -o extended 2>/dev/null'
dump conntrack6 sh -c 'conntrack -L -f ipv6 -o extended 2>/dev/null'
stop_trace 56

if [ -n "${NAT_RECORD:-}" ]; then
    for f in "$NAT_RECORD"/*.bin; do
        echo "@@NETLINK $(basename "$f")@@"
        base64 "$f"
        echo "@@END NETLINK@@"
    done
fi

# kube-proxy's setting off: IPVS has the kernel drop each connection's conntrack entry.
echo 0 >/proc/sys/net/ipv4/vs/conntrack
start_trace trace-off --nat
client_start off-client2 natclient2 --to $VIP:80 --count 3
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns-off
stop_trace 3
echo 1 >/proc/sys/net/ipv4/vs/conntrack
dump_clients
