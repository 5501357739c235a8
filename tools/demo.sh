#!/usr/bin/env bash
# README command 1: install what is missing (tools/setup.sh), then build and run the demo: the
# RPC demo (examples/rpc_demo.c), an RPC server and a client channel in one process on loopback
# that make calls of every kind and measure the call rate. Arguments go to the demo program
# (-d seconds, -w calls in flight). The echo demo is still there:
# bazel run -c opt //examples:echo_demo. Works from any directory.
#   tools/demo.sh --tls [args]   the same over mutual TLS: a CA, a server certificate for
#                                127.0.0.1 and a client certificate (SAN spiffe://demo/ns/client)
#                                are made with `openssl` in a temporary directory (rpc_demo -t)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash tools/setup.sh
if [ "${1:-}" != --tls ]; then exec bazel run -c opt //examples:rpc_demo -- "$@"; fi
shift
dir=$(mktemp -d /tmp/gaio-demo-tls.XXXXXX)
trap 'rm -rf "$dir"' EXIT
( cd "$dir"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
  leaf() { # name subject subjectAltName
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
    printf 'subjectAltName=%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
      -extfile "$1.ext" -out "$1.pem"
  }
  key ca.key && openssl req -x509 -new -key ca.key -out ca.pem -days 1 -subj "/CN=gaio demo CA"
  leaf server /CN=localhost DNS:localhost,IP:127.0.0.1
  leaf client "/O=demo/CN=demo client" URI:spiffe://demo/ns/client ) >"$dir/openssl.log" 2>&1 ||
  { cat "$dir/openssl.log" >&2; echo "demo: making the certificates failed" >&2; exit 1; }
echo "demo: mutual TLS with certificates made in $dir (CA, server 127.0.0.1, client spiffe://demo/ns/client)"
bazel run -c opt //examples:rpc_demo -- -t "$dir" "$@"
