#!/usr/bin/env bash
# Fuzzes the RPC frame parser (rpc/frame.c) with libFuzzer + ASan + UBSan for a bounded time.
#   tools/fuzz.sh [SECONDS]      default 60; 0 only replays the seed corpus
# Builds tests/fuzz/frame_fuzz.c with clang directly (no Bazel: -fsanitize=fuzzer must reach
# both compile and link, and a one-file target needs no more), copies the seeds of
# tests/fuzz/corpus/frame/ into a scratch directory (the repository is never written) and runs
# there. Exits 0 when no input crashed, broke an invariant, leaked or timed out; otherwise 1,
# keeping the scratch directory with the crashing input and the command that reproduces it.
# CC (default clang) picks the compiler; it must be clang with libclang-rt (tools/setup.sh).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

secs=${1:-60}
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
  echo "usage: tools/fuzz.sh [SECONDS]" >&2
  exit 2
fi
bash tools/setup.sh
cc=${CC:-clang}
[ "$cc" = gcc ] && cc=clang  # Bazel users may have CC=gcc exported; libFuzzer is clang's

work=$(mktemp -d "${TMPDIR:-/tmp}/gaio-fuzz.XXXXXX")
mkdir "$work/corpus" "$work/artifacts"
cp tests/fuzz/corpus/frame/* "$work/corpus/"

"$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. rpc/frame.c tests/fuzz/frame_fuzz.c -o "$work/frame_fuzz"

# -runs=0 would stop before the corpus is read; a 0-second budget replays the seeds only.
limit=(-max_total_time="$secs")
[ "$secs" -eq 0 ] && limit=(-runs=0)
echo "fuzz: frame parser, ${secs}s, scratch directory $work" >&2
set +e
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$work/frame_fuzz" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -dict=tests/fuzz/frame.dict -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus"
rc=$?
set -e

if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  echo "fuzz: FAILED (libFuzzer exit $rc). Inputs: $work/artifacts/" >&2
  for a in "$work/artifacts"/*; do
    [ -e "$a" ] && echo "  reproduce: $work/frame_fuzz $a" >&2
  done
  exit 1
fi
rm -rf "$work"
echo "fuzz: OK, no finding in ${secs}s" >&2
