#!/usr/bin/env bash
# Installs what gaio-c needs to build and test on Debian 12, and nothing when it is all there.
# Used by both README commands (tools/demo.sh, tools/test.sh) and so by CI. Idempotent, and
# silent when everything is installed. Installing needs root: run as root, or have sudo.
# GAIO_EXTRA_PKGS="pkg ..." adds packages to the list.
set -euo pipefail

# Debian packages: Bazel 4.2.3 and the rules it needs offline, googletest, protobuf-c (runtime,
# headers, protoc-c plugin), python3-protobuf (gaio-c's own protoc plugin), liburing, a C/C++
# toolchain, and clang with its sanitizer and fuzzer runtime (libclang-rt-14-dev is only a
# Recommends of clang, and we install without those), libuv for the benchmark's baseline
# server, OpenSSL for TLS, the C++ protobuf runtime and promtool for the command-line client
# and its test.
PKGS=(bazel-bootstrap bazel-rules-java bazel-platforms
      libgtest-dev libgmock-dev
      protobuf-compiler protobuf-c-compiler libprotobuf-c-dev
      python3-protobuf  # runs rpc/protoc_gen_gaio_rpc.py, the typed-helper generator
      liburing-dev build-essential clang libclang-rt-14-dev
      libssl-dev openssl  # TLS in //rpc; the tests make their certificates with openssl
      libc-ares-dev dnsmasq-base  # dns: targets in //rpc (c-ares); the tests' DNS server
      libuv1-dev   # the libuv baseline of tests/bench, built by `bazel test //...` too
      libprotobuf-dev libprotoc-dev  # //rpc/cli:gaiorpc: C++ protobuf runtime, .proto parser headers
      prometheus)  # promtool: tests/cli_test checks `gaiorpc stats --prometheus` with it
# shellcheck disable=SC2206  # word splitting of the extra list is intended
PKGS+=(${GAIO_EXTRA_PKGS:-})

# One dpkg-query for the whole list; unknown packages print nothing here and count as missing.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null || true)
missing=()
for p in "${PKGS[@]}"; do
  if ! grep -qE "^${p}(:[a-z0-9]+)? ii" <<<"$installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup: these Debian packages are missing and installing them needs root:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o DPkg::Lock::Timeout=300)
"${SUDO[@]}" "${APT[@]}" update
"${SUDO[@]}" "${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
