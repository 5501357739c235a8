#!/usr/bin/env bash
# Installs what gaio-c needs to build and test on Debian 12, and nothing when it is all there.
# Used by both README commands (tools/demo.sh, tools/test.sh). Idempotent and quiet when done.
set -euo pipefail

# Debian packages: Bazel 4.2.3 and the rules it needs offline, googletest, protobuf-c (runtime,
# headers, protoc-c plugin), liburing, a C/C++ toolchain, and clang for the fuzz target.
PKGS=(bazel-bootstrap bazel-rules-java bazel-platforms
      libgtest-dev libgmock-dev
      protobuf-compiler protobuf-c-compiler libprotobuf-c-dev
      liburing-dev build-essential clang)
PKGS+=(${GAIO_EXTRA_PKGS:-})

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
