#!/usr/bin/env bash
# The command-line client of gaio-c RPC servers, built on first use: installs what is missing
# (tools/setup.sh), builds //rpc/cli:gaiorpc quietly, then runs it with every argument unchanged,
# from the caller's directory (so that --proto, -I and -d @FILE paths are the caller's).
#   tools/gaiorpc.sh --help
#   tools/gaiorpc.sh 127.0.0.1:7000 list
# The exit status is gaiorpc's (0 OK, 1-16 the RPC status code, 64+ local errors: see --help),
# or bazel's when the build fails.
set -euo pipefail
repo="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash "$repo/tools/setup.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$repo" && bazel build --noshow_progress --ui_event_filters=-info //rpc/cli:gaiorpc) \
    >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
"$repo/bazel-bin/rpc/cli/gaiorpc" "$@"
