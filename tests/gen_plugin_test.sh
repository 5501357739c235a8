#!/usr/bin/env bash
# protoc-gen-gaiorpc (rpc/protoc_gen_gaio_rpc.py) on inputs that the BUILD's protos do not have:
# a streaming method is refused with protoc's error naming it (this RPC layer is unary only),
# and a file without services or package still gets its embedded descriptor and nothing else.
# Usage: gen_plugin_test.sh <plugin>
set -euo pipefail
plugin=$(readlink -f "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
status=0

cat > stream.proto <<'PROTO'
syntax = "proto3";
package s.v1;
message M {}
service Feed { rpc Watch(M) returns (stream M); }
PROTO
if protoc --plugin=protoc-gen-gaiorpc="$plugin" --gaiorpc_out=. stream.proto 2> err.txt; then
  echo "FAIL: a streaming method was accepted"
  status=1
elif ! grep -q "s.v1.Feed/Watch: streaming methods are not supported" err.txt; then
  echo "FAIL: unexpected error for a streaming method:"
  cat err.txt
  status=1
else
  echo "ok: streaming method refused: $(cat err.txt)"
fi

mkdir -p out
cat > plain.proto <<'PROTO'
syntax = "proto3";
message Only { string text = 1; }
PROTO
protoc --plugin=protoc-gen-gaiorpc="$plugin" --gaiorpc_out=out plain.proto
if ! grep -q "^extern const rpc_proto_file plain__proto_file;" out/plain.rpc.h ||
   ! grep -q '^  "plain.proto", descriptor_bytes, ' out/plain.rpc.c ||
   grep -q "_method\|_serve" out/plain.rpc.h; then
  echo "FAIL: unexpected output for a file without services:"
  cat out/plain.rpc.h out/plain.rpc.c
  status=1
else
  echo "ok: a file without services: its descriptor only"
fi
exit $status
