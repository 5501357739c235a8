#!/usr/bin/env bash
# README command 1: install what is missing (tools/setup.sh), then build and run the demo.
# Today the demo is the echo demo (an echo server and clients in one process on loopback);
# once the RPC layer exists it becomes the RPC demo. Arguments go to the demo program.
# Works from any directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash tools/setup.sh
exec bazel run -c opt //examples:echo_demo -- "$@"
