#!/bin/sh
# run-all.sh SCENARIO.sh...: run each scenario in its own shell, one after another, in this boot.
#
# Each scenario's output is framed for the Rust side (tests/src/lib.rs):
#   @@SCENARIO name BEGIN@@
#   ...
#   @@SCENARIO name END status=N elapsed=S.SS@@
# A scenario that failed is followed by the kernel log's tail (a dump named `dmesg`), and by
# a reset of anything it may have left behind so the next one starts clean.
# Exit status: the number of failed scenarios.

[ $# -gt 0 ] || {
    echo "usage: run-all.sh SCENARIO.sh..." >&2
    exit 2
}

uptime_s() {
    cut -d' ' -f1 /proc/uptime
}

failed=0
for file in "$@"; do
    name=$(basename "$file" .sh)
    start=$(uptime_s)
    echo "@@SCENARIO $name BEGIN@@"
    sh "$file" </dev/null 2>&1
    status=$?
    if [ "$status" -ne 0 ]; then
        failed=$((failed + 1))
        echo "@@DUMP dmesg@@"
        dmesg | tail -n 40
        echo "@@END dmesg status=0@@"
    fi
    elapsed=$(awk -v a="$start" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')
    echo "@@SCENARIO $name END status=$status elapsed=$elapsed@@"
    # A scenario's EXIT trap cleans up after it; one that died half-way may not have.
    (. /lab/lib.sh && node_reset)
done
exit "$failed"
