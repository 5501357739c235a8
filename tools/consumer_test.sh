#!/usr/bin/env bash
# Build and test tests/consumer, a separate Bazel workspace that uses gaio-c as an external
# repository (@gaio_c//rpc and the rpc_proto_library macro of @gaio_c//rpc:defs.bzl) on its own
# .proto. It cannot be a test of the main workspace (a nested workspace, listed in .bazelignore),
# hence this script. Arguments go to `bazel test`. Prints how long it took.
# Works from any directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../tests/consumer"
start=$(date +%s)
status=0
bazel test "$@" //... || status=$?
echo "consumer_test: bazel test //... in tests/consumer took $(( $(date +%s) - start )) s (exit $status)"
exit $status
