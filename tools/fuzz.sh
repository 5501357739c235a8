#!/usr/bin/env bash
# Fuzzes //rpc with libFuzzer + ASan + UBSan, each target for a bounded time.
#   tools/fuzz.sh [SECONDS [TARGET...]]   SECONDS per target, default 60 (0 only replays the
#                                         seeds); TARGETs: frame server client (default: all)
# Targets (tests/fuzz/, seeds in tests/fuzz/corpus/<target>/, written by gen_corpus.py):
#   frame   the frame and metadata parsers alone (rpc/frame.c, rpc/metadata.c, frame_fuzz.c)
#   server  the server's receive path through a unix socket: bytes -> frames -> dispatch ->
#           unpack -> handler -> reply (server_fuzz.c; its input encoding is at its top)
#   client  the channel's receive path from a fake server: bytes -> responses -> completions
#           (client_fuzz.c; its input is a small script, described at its top)
# Builds each target with clang directly (no Bazel: -fsanitize=fuzzer must reach both compile
# and link; the .proto files are compiled here with protoc-c), copies the seeds into a scratch
# directory (the repository is never written) and runs there, every target even after one
# fails. Exits 0 when no input crashed, broke an invariant, leaked or timed out; otherwise 1,
# keeping the scratch directory with the failing inputs, and printing for each one its path and
# the commands that replay it:
#   <scratch>/<target>_fuzz <input>                       the libFuzzer binary (clang)
#   bazel run //tests/fuzz:<target>_corpus_test -- <input>   the Bazel replay (any compiler;
#                                                         add --config=asan)
# GAIO_BACKEND=epoll (or uring) fuzzes the server and client over that gaio backend; default:
# the automatic choice. CC (default clang) picks the compiler; it must be clang with
# libclang-rt (tools/setup.sh). CI runs `tools/fuzz.sh 60`: 60 s per target.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

usage() {
  echo "usage: tools/fuzz.sh [SECONDS [frame|server|client ...]]" >&2
  exit 2
}
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] || usage
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frame server client)
for t in "${targets[@]}"; do
  case "$t" in frame | server | client) ;; *) usage ;; esac
done

bash tools/setup.sh
cc=${CC:-clang}
[ "$cc" = gcc ] && cc=clang  # Bazel users may have CC=gcc exported; libFuzzer is clang's

work=$(mktemp -d "${TMPDIR:-/tmp}/gaio-fuzz.XXXXXX")
mkdir "$work/gen" "$work/obj"

san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
common=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer "${san[@]}" -I. -I"$work/gen")
# The fuzz targets' own files are held to -Werror; the library's are built as they are, so that
# a warning clang has and gcc (the Bazel build) lacks does not stop the fuzzing.
strict=(-Wall -Wextra -Werror)

# The libraries of the server and client targets, instrumented for coverage, built once.
lib_objs=()
build_lib() {
  protoc --proto_path=. --c_out="$work/gen" rpc/health.proto rpc/admin.proto rpc/reflection.proto \
    tests/rpc_test.proto
  # Every C file of //gaio and //rpc is a library source (their BUILD files list the same).
  local srcs=(gaio/*.c rpc/*.c
              "$work/gen/rpc/health.pb-c.c" "$work/gen/rpc/admin.pb-c.c"
              "$work/gen/rpc/reflection.pb-c.c"
              "$work/gen/tests/rpc_test.pb-c.c")
  local s o
  for s in "${srcs[@]}"; do
    o="$work/obj/$(basename "${s%.c}").o"
    "$cc" "${common[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o"
    lib_objs+=("$o")
  done
}

build() {
  local t=$1
  case "$t" in
    frame)
      "$cc" "${common[@]}" "${strict[@]}" -fsanitize=fuzzer \
        rpc/frame.c rpc/metadata.c tests/fuzz/frame_fuzz.c -o "$work/frame_fuzz" ;;
    server | client)
      [ ${#lib_objs[@]} -gt 0 ] || build_lib
      "$cc" "${common[@]}" "${strict[@]}" -fsanitize=fuzzer \
        tests/fuzz/fuzz_util.c "tests/fuzz/${t}_fuzz.c" "${lib_objs[@]}" \
        -luring -lprotobuf-c -lssl -lcrypto -lcares -pthread -o "$work/${t}_fuzz" ;;
  esac
}

# The largest input each target gets: the frame parser needs no more than a few frames; the
# server's max_body is 4096 and an oversize body must fit whole to be skipped; the client's
# max_body is 1024.
declare -A max_len=([frame]=4096 [server]=8192 [client]=4096)

failed=() repro=()
for t in "${targets[@]}"; do
  build "$t"
  mkdir "$work/corpus_$t" "$work/artifacts_$t"
  cp "tests/fuzz/corpus/$t"/* "$work/corpus_$t/"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  # -runs=0 would stop before the corpus is read; a 0-second budget replays the seeds only.
  limit=(-max_total_time="$secs")
  [ "$secs" -eq 0 ] && limit=(-runs=0)
  echo "fuzz: $t, ${secs}s, scratch directory $work" >&2
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/${t}_fuzz" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]}" \
    "${dict[@]}" -print_final_stats=1 -artifact_prefix="$work/artifacts_$t/" "$work/corpus_$t"
  rc=$?
  set -e
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/artifacts_$t")" ]; then
    failed+=("$t (libFuzzer exit $rc)")
    for a in "$work/artifacts_$t"/*; do
      [ -e "$a" ] || continue
      repro+=("  $a" "    replay: $work/${t}_fuzz $a"
              "        or: bazel run //tests/fuzz:${t}_corpus_test -- $a")
    done
  fi
done

# The summary comes last, so that a log's tail shows it whichever target failed.
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}; scratch directory kept: $work" >&2
  [ ${#repro[@]} -gt 0 ] && printf '%s\n' "${repro[@]}" >&2
  exit 1
fi
rm -rf "$work"
echo "fuzz: OK, no finding in ${secs}s per target (${targets[*]})" >&2
