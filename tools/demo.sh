#!/usr/bin/env bash
# README command 1: install what is missing (tools/setup.sh), then build and run the demo: the
# RPC demo (examples/rpc_demo.c), an RPC server and a client channel in one process on loopback
# that make calls of every kind and measure the call rate. Arguments go to the demo program
# (-d seconds, -w calls in flight). The echo demo is still there:
# bazel run -c opt //examples:echo_demo. Works from any directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash tools/setup.sh
exec bazel run -c opt //examples:rpc_demo -- "$@"
