#!/usr/bin/env bash
# Runs the fault-invariant suite (tests/fault_invariants_test.cc) over many seeds of the fault
# injector (gaio/fault.h), one process per seed, two at a time (the CI machine's cores).
#   tools/fault.sh [N] [FIRST]     seeds FIRST .. FIRST+N-1 (default 100 seeds from 1)
#   tools/fault.sh 1 1234          replay seed 1234 alone
# Environment: GAIO_FAULT_RATE (per mille, default 20), GAIO_FAULT_KINDS, GAIO_FAULT_RING are
# passed on (fault.h); FAULT_BAZEL_FLAGS adds build flags (--config=asan: AddressSanitizer +
# LeakSanitizer + UBSan too; --config=tsan works as well); FAULT_JOBS (default 2) processes at a
# time; FAULT_TIMEOUT (default 120) seconds per seed; FAULT_GTEST_FILTER limits the tests run.
# Builds with --config=fault, then prints one line per seed that broke an invariant (a test
# failure, a crash, a sanitizer report, a hang), with the commands that replay it, and a summary:
# seeds run, faults injected per kind (summed over the seeds), violations. The logs of the
# failing seeds are kept in a scratch directory, named at the end. Exits 1 on any violation.
set -uo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

n=${1:-100}
first=${2:-1}
if ! [[ "$n" =~ ^[0-9]+$ && "$first" =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then
  echo "usage: tools/fault.sh [N] [FIRST]" >&2
  exit 2
fi
jobs=${FAULT_JOBS:-2}
limit=${FAULT_TIMEOUT:-120}
read -r -a extra <<<"${FAULT_BAZEL_FLAGS:-}"
target=//tests:fault_invariants_test

bash tools/setup.sh >/dev/null || exit 1
ci=()
if [ "${CI:-}" = true ]; then ci=(--color=no --curses=no --show_progress_rate_limit=30); fi
if ! bazel build "${ci[@]}" --config=fault "${extra[@]}" "$target"; then
  echo "fault: the build failed" >&2
  exit 1
fi
bin="$(bazel info --config=fault "${extra[@]}" bazel-bin 2>/dev/null)/tests/fault_invariants_test"
[ -x "$bin" ] || { echo "fault: no binary at $bin" >&2; exit 1; }

# A copy: a build started meanwhile (another terminal) cannot change what runs.
work=$(mktemp -d "${TMPDIR:-/tmp}/gaio-fault.XXXXXX")
cp "$bin" "$work/fault_invariants_test"
export FAULT_WORK=$work FAULT_LIMIT=$limit FAULT_FILTER=${FAULT_GTEST_FILTER:-*}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# one SEED: runs the suite under it; the exit status and log stay in $work.
one() {
  local s=$1 rc
  GAIO_FAULT_SEED=$s timeout -s KILL "$FAULT_LIMIT" "$FAULT_WORK/fault_invariants_test" \
    --gtest_filter="$FAULT_FILTER" >"$FAULT_WORK/$s.log" 2>&1
  rc=$?
  echo "$rc" >"$FAULT_WORK/$s.rc"
}
export -f one

t0=$(date +%s.%N)
seq "$first" $((first + n - 1)) | xargs -P "$jobs" -I{} bash -c 'one {}' 2>/dev/null
t1=$(date +%s.%N)

# Faults injected, summed over the seeds from the line each run prints at its end
# ("gaio-fault: seed=S points=P short=N eagain=N ...").
totals=$(find "$work" -name '*.log' -exec cat {} + | awk '/^gaio-fault: seed=/ {
    for (i = 3; i <= NF; i++) {
      split($i, kv, "=")
      if (!(kv[1] in sum)) order[++n] = kv[1]
      sum[kv[1]] += kv[2]
    }
  }
  END { for (i = 1; i <= n; i++) printf "%s%s=%d", (i > 1 ? " " : ""), order[i], sum[order[i]] }')

# What a replay needs besides the seed: the other settings of this run.
envs=""
for v in GAIO_FAULT_RATE GAIO_FAULT_KINDS GAIO_FAULT_RING; do
  [ -n "${!v:-}" ] && envs+="$v=${!v} "
done
flags=${FAULT_BAZEL_FLAGS:+FAULT_BAZEL_FLAGS='$FAULT_BAZEL_FLAGS' }

violations=0
for ((s = first; s < first + n; s++)); do
  rc=$(cat "$work/$s.rc" 2>/dev/null || echo missing)
  if [ "$rc" = 0 ] && grep -q '^\[  PASSED  \]' "$work/$s.log"; then
    rm -f "$work/$s.log" "$work/$s.rc"
    continue
  fi
  violations=$((violations + 1))
  failed=$(sed -n 's/^\[  FAILED  \] \([^ ,]*\).*/\1/p' "$work/$s.log" | grep -v '^[0-9]' | sort -u)
  what=$(printf '%s' "$failed" | paste -sd' ')
  if [ -z "$what" ]; then
    what=$(grep -m1 -oE 'WATCHDOG: [^ ]+|ERROR: [A-Za-z]+Sanitizer: [a-z-]+|runtime error.*' \
      "$work/$s.log" | head -n1)
  fi
  [ "$rc" = 137 ] && what="${what:+$what; }killed after ${limit}s (a hang)"
  filter=$(printf '%s' "$failed" | paste -sd':')
  if [ -z "$filter" ]; then
    filter=$(grep -oE 'WATCHDOG: [^ ]+' "$work/$s.log" | head -n1 | sed 's/^WATCHDOG: //')
  fi
  echo "seed $s: VIOLATION (exit $rc) ${what:-see the log}"
  echo "  replay: ${envs}GAIO_FAULT_SEED=$s $bin --gtest_filter='${filter:-$FAULT_FILTER}'"
  echo "      or: ${envs}${flags}tools/fault.sh 1 $s    (log: $work/$s.log)"
done

secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "fault: $n seeds ($first..$((first + n - 1))) in ${secs}s, $jobs at a time," \
  "rate ${GAIO_FAULT_RATE:-20}/1000${FAULT_BAZEL_FLAGS:+, $FAULT_BAZEL_FLAGS}"
echo "fault: injected: ${totals:-none}"
echo "fault: violations: $violations"
if [ "$violations" -eq 0 ]; then
  rm -rf "$work"
else
  echo "fault: logs of the failing seeds: $work"
fi
exit $((violations > 0))
