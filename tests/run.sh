#!/usr/bin/env bash
# Run test binaries of one build variant and add up their results.
# Usage: tests/run.sh VARIANT BINARY...
set -u
variant=$1; shift
passed=0; failed=0; bad=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -ne 0 ] && bad+=("$t")
done
echo "[$variant] ${#bad[@]} failing binaries: ${bad[*]:-none}"
echo "$variant: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
