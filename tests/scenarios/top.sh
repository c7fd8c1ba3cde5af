#!/bin/sh
# top: `ipvs-trace top --batch` over an rr service with three real servers (30 connections)
# and a wrr 3:1 one with two (20 connections), six one-second frames. Asserted: the last
# frame's CONNS per real server (new connections since top started) equal ipvsadm -Ln --stats
# --exact Conns, every service and backend is listed, and it says `lost: 0 events`.
# Then, if the image has util-linux's `script`, the live view under a pseudo-terminal: `q` on
# its keyboard ends it with status 0, the output ends by leaving the alternate screen and
# showing the cursor, and the terminal's settings (stty -g) are the same as before.
set -e
. /lab/lib.sh
node_setup

# Addresses no other scenario uses (see metrics.sh: a real server that comes back from IPVS's
# trash keeps its counters).
RR=172.31.0.90
WRR=172.31.0.91
add_vip $RR
add_vip $WRR
ipvsadm -A -t $RR:80 -s rr
ipvsadm -A -t $WRR:80 -s wrr
mk_pod tpod1 10.245.19.1 8080
mk_pod tpod2 10.245.19.2 8080
mk_pod tpod3 10.245.19.3 8080
mk_pod tpod4 10.245.19.11 8080
mk_pod tpod5 10.245.19.12 8080
for _ip in 10.245.19.1 10.245.19.2 10.245.19.3; do
    ipvsadm -a -t $RR:80 -r $_ip:8080 -m -w 1
done
ipvsadm -a -t $WRR:80 -r 10.245.19.11:8080 -m -w 3
ipvsadm -a -t $WRR:80 -r 10.245.19.12:8080 -m -w 1
mk_client tclient 198.51.100.90

BTF=
[ -z "$LAB_IP_VS_BTF" ] || BTF="--btf $LAB_IP_VS_BTF"
# shellcheck disable=SC2086 # BTF is empty or two words
ipvs-trace top --batch --interval 1s --iterations 6 $BTF \
    >"$LAB_TMP/top.out" 2>"$LAB_TMP/top.stderr" &
TOP_PID=$!
echo "$TOP_PID" >>"$LAB_PIDS"
if ! wait_for "$LAB_TMP/top.stderr" '^ipvs-trace: tracing' 60; then
    cat "$LAB_TMP/top.stderr"
    die "ipvs-trace top did not start"
fi
lab_log "ipvs-trace top is tracing"
client_start rr tclient --to $RR:80 --count 30
client_start wrr tclient --to $WRR:80 --count 20
client_wait || lab_log "some connections failed (see the client dumps)"
dump_ipvs
_top_st=0
wait "$TOP_PID" || _top_st=$?
dump top.status echo "$_top_st"
dump top.out cat "$LAB_TMP/top.out"
dump top.stderr cat "$LAB_TMP/top.stderr"
dump_clients
dump_stats

if ! command -v script >/dev/null; then
    dump tty.skipped echo "no util-linux script in the image"
    exit 0
fi
# A pseudo-terminal needs devpts, which /init does not mount.
if ! grep -q ' /dev/pts devpts ' /proc/mounts; then
    mkdir -p /dev/pts
    mount -t devpts devpts /dev/pts
fi
# The pty of `script` has no size when its stdin is a pipe: stty gives it one. The
# settings before and after top are compared (raw mode undone); the key `q` is typed once top
# has taken the screen (the alternate-screen sequence is in the typescript), and
# --iterations 30 ends it anyway if `q` were ignored (the test then fails on the frame count).
cat >"$LAB_TMP/tty.sh" <<EOF
stty cols 100 rows 30
stty -g >$LAB_TMP/tty.before
ipvs-trace top --iterations 30 $BTF 2>$LAB_TMP/tty.stderr
st=\$?
stty -g >$LAB_TMP/tty.after
exit \$st
EOF
{
    wait_for "$LAB_TMP/typescript" '1049h' 60 || lab_log "top never took the screen"
    # Connections while the view is up, so it draws service and backend rows.
    nsenter --net=/run/netns/tclient lab-net connect --to $RR:80 --count 3 >/dev/null 2>&1 || true
    sleep 2
    printf q
    # script must not see the end of its input before top has read the key.
    sleep 5
} | TERM=xterm script -qfec "sh $LAB_TMP/tty.sh" "$LAB_TMP/typescript" >/dev/null 2>&1 &
_tty_pid=$!
_tty_st=0
wait "$_tty_pid" || _tty_st=$?
dump tty.status echo "$_tty_st"
# ESC as `~`: the console must not interpret the sequences, the test reads them.
dump tty.out tr '\033' '~' <"$LAB_TMP/typescript"
dump tty.stderr cat "$LAB_TMP/tty.stderr"
dump tty.stty sh -c "cat $LAB_TMP/tty.before $LAB_TMP/tty.after"
