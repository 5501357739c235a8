#!/usr/bin/env bash
# Build and test tests/consumer, a separate Bazel workspace that uses gaio-c as an external
# repository (@gaio_c//rpc, @gtest and the rpc_proto_library macro of @gaio_c//rpc:defs.bzl) on
# its own .proto. It cannot be a test of the main workspace (a nested workspace, listed in
# .bazelignore), hence this script. First it checks that the consumer's WORKSPACE (from its
# GAIO_C line on) and .bazelrc are README's two blocks, the path aside, and that the sanitizer
# configs in them are gaio-c's own (.bazelrc); then `bazel test //...` there, plain and with
# --config=asan. Arguments go to both `bazel test` runs. Prints how long it took. Works from any
# directory.
set -euo pipefail
root="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
cd "$root"

check_failed=0
mismatch() {
  echo "consumer_test: $1 differs from README.md's block:" >&2
  diff <(echo "$2") <(echo "$3") >&2 || true
  check_failed=1
}
readme_ws=$(awk '/^GAIO_C = / {f = 1} f && /^```$/ {exit} f' README.md |
            sed '1s|^GAIO_C = "../gaio-c"|GAIO_C = "../.."|')
consumer_ws=$(sed -n '/^GAIO_C = /,$p' tests/consumer/WORKSPACE)
[[ -n "$readme_ws" && "$readme_ws" == "$consumer_ws" ]] ||
  mismatch tests/consumer/WORKSPACE "$readme_ws" "$consumer_ws"
readme_rc=$(awk '/^# gaio-c.s build settings and sanitizer configs/ {f = 1} f && /^```$/ {exit} f' README.md)
consumer_rc=$(cat tests/consumer/.bazelrc)
[[ -n "$readme_rc" && "$readme_rc" == "$consumer_rc" ]] ||
  mismatch tests/consumer/.bazelrc "$readme_rc" "$consumer_rc"
ours=$(grep -E '^build:(asan|tsan) ' .bazelrc)
theirs=$(grep -E '^build:(asan|tsan) ' tests/consumer/.bazelrc)
if [[ "$ours" != "$theirs" ]]; then
  echo "consumer_test: the asan/tsan configs of README.md's .bazelrc block are not gaio-c's:" >&2
  diff <(echo "$ours") <(echo "$theirs") >&2 || true
  check_failed=1
fi
[[ $check_failed -eq 0 ]] || exit 1
echo "consumer_test: tests/consumer matches README.md's WORKSPACE and .bazelrc blocks"

cd tests/consumer
start=$(date +%s)
status=0
bazel test "$@" //... || status=$?
[[ $status -eq 0 ]] && { bazel test --config=asan "$@" //... || status=$?; }
echo "consumer_test: bazel test //... (plain, then --config=asan) in tests/consumer took" \
     "$(( $(date +%s) - start )) s (exit $status)"
exit $status
