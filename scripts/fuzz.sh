#!/bin/sh
# Every libFuzzer target in build/fuzz/: first a replay of its whole seed
# corpus (tests/fuzz/corpus/NAME, each input run once: -runs=0), then a run
# of FUZZ_SECONDS (default 30; make test uses 5) on a scratch copy of the
# corpus, so the repository's corpus only changes on purpose. A crash, a
# leak or a sanitizer report fails the target and its input is kept in
# build/fuzz/crashes/ (turn it into a regression test). Prints "ok NAME: N
# inputs replayed, N executions in Ss" per target and a final count line.
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
    log=build/test-logs/$name.log
    opts="-timeout=10 -rss_limit_mb=2048 -artifact_prefix=build/fuzz/crashes/$name-"
    seeds=0
    if [ -d "$corpus" ]; then
        seeds=$(find "$corpus" -type f | wc -l)
        # shellcheck disable=SC2086
        if ! "$bin" $opts -runs=0 "$corpus" >"$log" 2>&1; then
            echo "FAIL $name: an input of $corpus crashes or leaks, see $log"
            tail -20 "$log"
            failed=$((failed + 1))
            continue
        fi
    fi
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
    # shellcheck disable=SC2086
    if "$bin" $opts -max_total_time="$secs" "$work" >>"$log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
        echo "ok $name: $seeds inputs replayed, ${runs:-?} executions in ${secs}s"
        passed=$((passed + 1))
    else
        echo "FAIL $name: crash or leak, see $log and build/fuzz/crashes/"
        tail -20 "$log"
        failed=$((failed + 1))
    fi
    rm -rf "$work"
done
if [ $((passed + failed)) -eq 0 ]; then
    echo "FAIL fuzz: no target in build/fuzz (make fuzz-build)"
    failed=1
fi
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
