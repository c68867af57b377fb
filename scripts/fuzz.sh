#!/bin/sh
# Runs every libFuzzer target in build/fuzz/ for FUZZ_SECONDS each (default
# 30), on a scratch copy of its seed corpus (tests/fuzz/corpus/NAME), so the
# repository's corpus only changes on purpose. A crash fails the run and its
# input is kept in build/fuzz/crashes/ (turn it into a regression test).
# Prints "ok NAME: N executions" per target and a final count line.
set -u
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
passed=0
failed=0
mkdir -p build/fuzz/crashes build/test-logs
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus=tests/fuzz/corpus/${name#fuzz_}
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
    log=build/test-logs/$name.log
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build/fuzz/crashes/"$name"- "$work" >"$log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
        echo "ok $name: ${runs:-?} executions in ${secs}s"
        passed=$((passed + 1))
    else
        echo "FAIL $name: crash or leak, see $log and build/fuzz/crashes/"
        tail -20 "$log"
        failed=$((failed + 1))
    fi
    rm -rf "$work"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
