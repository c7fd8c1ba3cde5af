#!/bin/sh
# run-all.sh SCENARIO.sh...: run each scenario in its own shell, one after another, in this boot.
#
# Each scenario's output is framed for the Rust side (tests/src/lib.rs):
#   @@SCENARIO name BEGIN@@
#   ...
#   @@SCENARIO name END status=N elapsed=S.SS@@
# A scenario that failed is followed by the kernel log's tail (a dump named `dmesg`), and by
# a reset of anything it may have left behind so the next one starts clean. A scenario during
# which the kernel logged a warning, a BUG or an oops fails whatever its own checks said: a
# tool left running on every node must never make the kernel warn (on a node booted with
# panic_on_warn a WARN is a crash).
# Exit status: the number of failed scenarios.

[ $# -gt 0 ] || {
    echo "usage: run-all.sh SCENARIO.sh..." >&2
    exit 2
}

uptime_s() {
    cut -d' ' -f1 /proc/uptime
}

# kernel_complaints: how many warnings, BUGs and oopses the kernel has logged since boot.
kernel_complaints() {
    dmesg | grep -c -E 'WARNING: CPU|BUG:|Oops:|general protection fault'
}

failed=0
for file in "$@"; do
    name=$(basename "$file" .sh)
    start=$(uptime_s)
    echo "@@SCENARIO $name BEGIN@@"
    complaints=$(kernel_complaints)
    sh "$file" </dev/null 2>&1
    status=$?
    if [ "$(kernel_complaints)" -ne "$complaints" ]; then
        echo "FAIL: the kernel logged a warning, BUG or oops during $name (dmesg below)"
        [ "$status" -ne 0 ] || status=1
    fi
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
