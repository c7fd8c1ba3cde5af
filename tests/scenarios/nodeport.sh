#!/bin/sh
# nodeport: one Service, as kube-proxy programs it: a ClusterIP-style VIP on kube-ipvs0 and a
# NodePort on the node's address, both rr over the same 2 pods. client1 uses the ClusterIP,
# client2 the NodePort, client3 both. Asserted: each event attributed to the VIP:port the
# kernel's entry has, per VIP as many events as connections and as IPVS's Conns, rr even.
set -e
. /lab/lib.sh
node_setup

CLUSTER_IP=172.31.0.40
NODE_IP=192.0.2.10
add_vip $CLUSTER_IP
add_node_ip $NODE_IP
ipvsadm -A -t $CLUSTER_IP:80 -s rr
ipvsadm -A -t $NODE_IP:30080 -s rr
for i in 1 2; do
    mk_pod pod$i 10.245.7.$i 8080
    ipvsadm -a -t $CLUSTER_IP:80 -r 10.245.7.$i:8080 -m -w 1
    ipvsadm -a -t $NODE_IP:30080 -r 10.245.7.$i:8080 -m -w 1
done
for i in 1 2 3; do
    mk_client client$i 198.51.100.1$i
done

start_trace trace
client_start cluster1 client1 --to $CLUSTER_IP:80 --count 10
client_start node2 client2 --to $NODE_IP:30080 --count 10
client_start cluster3 client3 --to $CLUSTER_IP:80 --count 4
client_start node3 client3 --to $NODE_IP:30080 --count 6
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
stop_trace 30
dump_clients
dump_stats
