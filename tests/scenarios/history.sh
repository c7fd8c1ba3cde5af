#!/bin/sh
# history: serve records every decision with the names of that moment, and `ipvs-trace who`
# answers for past connections: from serve's API, from the disk history offline, and from the
# kernel's connection table when no serve runs.
# The seed node plus a Service shop/cart (rr over two pods), names from the in-repo API server.
# 200 connections over four services (the seed's ClusterIP http and grpc ports, its http
# NodePort from outside, shop/cart); then two backend pods are deleted from the API and their
# IPs given to new pods, and 19 more connections are made.
# Asserted (tests/tests/e2e.rs): `who CLIENT:PORT` for each connection names the backend
# ipvsadm -Lnc showed at the time and the pod that had its IP then (the old pods for the 200);
# --backend and --pod give exactly the connections that pod received; the same answers after
# a SIGTERM and a restart on the same --history-dir, and offline with --history-dir; after a
# kill -9 mid-storm and a torn last write, serve starts, warns once, and every decision that
# was on disk before the kill is still answered; who with no serve answers from the live
# table; the socket is 0600 root's, a non-root user gets a permission error, the metrics
# listener serves no decisions, bad parameters get a 400 naming them, bad --server and
# --history-dir values clear errors, a full disk counted drops while memory still answers.
set -e
. /lab/lib.sh
node_setup
seed_node

CART_VIP=172.31.0.90
add_vip $CART_VIP
ipvsadm -A -t $CART_VIP:80 -s rr
mk_pod cart-a 10.245.18.1 8080
mk_pod cart-b 10.245.18.2 8080
ipvsadm -a -t $CART_VIP:80 -r 10.245.18.1:8080 -m -w 1
ipvsadm -a -t $CART_VIP:80 -r 10.245.18.2:8080 -m -w 1
kube_apiserver_start /lab/fixtures/seed-snapshot.json /lab/fixtures/history-shop.json

HDIR=$LAB_TMP/history
SOCK=/run/ipvs-trace/api.sock
API=127.0.0.1:9810
METRICS=127.0.0.1:9808
OLD_POD=vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-x7k2p

# http_get ADDR PATH: the raw HTTP answer (status line, headers, body): busybox wget hides
# the body of an error. busybox nc ends when its input does, answer or not: the input stays
# open until the server has answered and closed (Connection: close).
http_get() {
    {
        printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$1"
        sleep 2
    } | nc "${1%:*}" "${1##*:}"
}

# who_each: `who -o json LOCAL` for every client address the clients used (once each: one
# client netns may use the same port towards two VIPs), each answer after a line `@ LOCAL`.
who_each() {
    for _local in $(awk '$3 == "ok" { print $1 }' "$LAB_TMP"/client-*.out | sort -u); do
        echo "@ $_local"
        ipvs-trace who -o json "$_local" 2>>"$LAB_TMP/who-each.stderr" || echo "@ status $?"
    done
}

export RUST_LOG=ipvs_trace::kube=debug
serve_start serve1 --metrics-addr $METRICS --kubeconfig "$LAB_KUBECONFIG" \
    --history-dir "$HDIR" --api-addr $API
unset RUST_LOG
wait_for "$LAB_TMP/serve1.stderr" "kubernetes names synced" 60 || die "names did not sync"

client_start http client-pod --to $SEED_CLUSTER_IP:80 --count 60
client_start grpc client-pod --to $SEED_CLUSTER_IP:50091 --count 40
client_start nodeport outside --to $SEED_NODE_IP:32380 --count 40
client_start cart client-pod --to $CART_VIP:80 --count 60
client_wait || lab_log "some connections failed (see the client dumps)"
# The kernel's view at the time: the entries stay in TIME_WAIT for two minutes.
dump_conns conns
dump_stats

# Two backend pods go, and new pods take their IPs (as a StatefulSet or a small pod CIDR does).
kube_delete pods ratel $OLD_POD
kube_delete pods shop cart-5f7c9-a1b2c
kube_apply /lab/fixtures/history-replaced.json
for _line in "pods: deleted ratel/$OLD_POD" "pods: deleted shop/cart-5f7c9-a1b2c" \
    "endpointslices: applied shop/cart-k8x2z" "endpointslices: applied ratel/vpaas-demo-prod-8t5xq"; do
    wait_for "$LAB_TMP/serve1.stderr" "kubernetes $_line" 30 || die "serve did not see: $_line"
done
client_start late-cart client-pod --to $CART_VIP:80 --count 10
client_start late-http client-pod --to $SEED_CLUSTER_IP:80 --count 9
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns-late
# A decision reaches the store within a second of its event.
sleep 2

dump who-each who_each
dump who-each.stderr cat "$LAB_TMP/who-each.stderr"
dump who-backend ipvs-trace who -o json --backend 10.245.18.1:8080
dump who-pod-cart-a ipvs-trace who -o json --pod shop/cart-5f7c9-a1b2c
dump who-pod-cart-c ipvs-trace who -o json --pod shop/cart-5f7c9-c5f6g
dump who-pod-x7k2p ipvs-trace who -o json --pod ratel/$OLD_POD
dump who-service ipvs-trace who -o json --service ratel/vpaas-demo-prod:grpc --since 1h
dump who-client ipvs-trace who -o json --limit 100000 10.245.97.12
dump who-outside ipvs-trace who -o json --limit 100000 198.51.100.7
dump who-table ipvs-trace who --limit 5 --service shop/cart
dump who-none ipvs-trace who -o json 203.0.113.99

# Security and bad input.
dump socket-mode stat -c '%a %u %F' $SOCK
# A user that is not root (busybox su needs it in /etc/passwd).
grep -q '^nobody:' /etc/passwd 2>/dev/null || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >>/etc/group
dump who-nonroot su -s /bin/sh -c 'ipvs-trace who 10.245.97.12' nobody
dump metrics-decisions http_get $METRICS "/v1/decisions?client=10.245.97.12"
dump api-tcp http_get $API "/v1/decisions?client=10.245.97.12&limit=3"
dump api-bad-client http_get $API "/v1/decisions?client=10.0.0"
dump api-bad-limit http_get $API "/v1/decisions?limit=999999999"
dump api-unknown http_get $API "/v1/decisions?colour=red"
dump who-bad-server ipvs-trace who --server unix:$LAB_TMP/nobody.sock 10.245.97.12
dump who-bad-http ipvs-trace who --server http://127.0.0.1:1 10.245.97.12
dump who-bad-since ipvs-trace who --since yesterday 10.245.97.12
dump who-no-filter ipvs-trace who

# A clean stop and a start on the same directory: the same answers.
serve_stop serve1
dump offline-client ipvs-trace who -o json --limit 100000 --history-dir "$HDIR" 10.245.97.12
serve_start serve2 --metrics-addr $METRICS --kubeconfig "$LAB_KUBECONFIG" --history-dir "$HDIR"
dump restart-client ipvs-trace who -o json --limit 100000 10.245.97.12
dump restart-outside ipvs-trace who -o json --limit 100000 198.51.100.7

# kill -9 in the middle of a storm, then a torn last write as a power loss leaves one.
client_start storm client-pod --to $CART_VIP:80 --count 300
sleep 3
dump committed ipvs-trace who -o json --limit 100000 --history-dir "$HDIR" 10.245.97.12
kill -KILL "$SERVE_PID"
wait "$SERVE_PID" || true
client_wait || lab_log "some connections failed (see the client dumps)"
_newest=$(ls "$HDIR" | sort | tail -n 1)
dump history-files ls -l "$HDIR"
head -c 37 /dev/urandom >>"$HDIR/$_newest"
serve_start serve3 --metrics-addr $METRICS --no-kube --history-dir "$HDIR"
dump after-kill ipvs-trace who -o json --limit 100000 10.245.97.12
serve_stop serve3

# No serve: the kernel's connection table, names from the API server.
client_start nolive outside --to $CART_VIP:80 --count 5
client_wait || lab_log "some connections failed (see the client dumps)"
dump_conns conns-fallback
dump who-fallback ipvs-trace who -o json --kubeconfig "$LAB_KUBECONFIG" 198.51.100.7

# History directories that cannot be used, and a disk that fills up.
: >"$LAB_TMP/a-file"
dump serve-dir-file ipvs-trace serve --no-kube --metrics-addr 127.0.0.1:0 \
    --api-socket "$LAB_TMP/x.sock" --history-dir "$LAB_TMP/a-file"
mkdir -p "$LAB_TMP/ro" "$LAB_TMP/full"
mount -t tmpfs -o ro,size=1m tmpfs "$LAB_TMP/ro"
dump serve-dir-ro ipvs-trace serve --no-kube --metrics-addr 127.0.0.1:0 \
    --api-socket "$LAB_TMP/x.sock" --history-dir "$LAB_TMP/ro/history"
mount -t tmpfs -o size=256k tmpfs "$LAB_TMP/full"
# Leave the history a few kilobytes: its first blocks fit, the rest do not.
dd if=/dev/zero of="$LAB_TMP/full/filler" bs=1k count=248 2>/dev/null || true
serve_start serve4 --metrics-addr $METRICS --no-kube --history-dir "$LAB_TMP/full/history"
client_start full outside --to $CART_VIP:80 --count 300
client_wait || lab_log "some connections failed (see the client dumps)"
sleep 3
dump full-metrics wget -q -O - "http://$METRICS/metrics"
dump full-memory ipvs-trace who -o json --limit 100000 198.51.100.7 --since 1m
dump full-df df -k "$LAB_TMP/full"
serve_stop serve4
umount "$LAB_TMP/full" "$LAB_TMP/ro"
dump_clients
