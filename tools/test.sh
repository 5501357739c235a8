#!/usr/bin/env bash
# README command 2: install what is missing (tools/setup.sh), then build and run every test.
#   tools/test.sh                      every test (bazel test //...)
#   tools/test.sh --config=asan        under AddressSanitizer + UBSan (also --config=tsan)
#   CC=clang tools/test.sh             with clang instead of gcc
#   tools/test.sh //tests:gaio_test    only these targets (any argument starting with // is a
#                                      target pattern; then //... is not added)
# Other arguments go to `bazel test` unchanged. With CI=true, flags for a 2-core CI machine are
# added. The exit status is bazel's (0 all passed, 3 a test failed, 1 build failed, 4 no tests).
# Works from any directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash tools/setup.sh

flags=()
if [ "${CI:-}" = true ]; then
  # Plain, complete logs; keep going past a broken target so every other test still runs and is
  # reported; one line per test target in the summary (.ci/run counts those lines).
  flags=(--jobs=2 --local_test_jobs=2 --keep_going --verbose_failures
         --test_output=errors --test_summary=short
         --color=no --curses=no --show_progress_rate_limit=30)
fi

targets=(//...)
for a in "$@"; do
  case "$a" in //*) targets=() ;; esac
done

exec bazel test "${flags[@]}" "$@" "${targets[@]}"
