#!/usr/bin/env bash
# Echo benchmarks: gaio-c against a hand-written epoll echo server and libuv, all measured in the
# same run, contestants interleaved round-robin within each repetition, reported as medians and
# ratios to the epoll baseline (and to libuv for ping-pong). Performance lives here, never in the
# timed tests. RPC benchmarks (the rpc-* workloads): unary gaio.bench.Echo/Say calls on an //rpc
# server (rpc) against two raw frame echo servers without protobuf, both driven by
# tests/bench/rpc_loadgen: raw (on a gaio watcher) and raw-epoll (plain epoll, no gaio: a ceiling
# that cannot move with the library); ratios rpc/raw and rpc/raw-epoll. Metadata workloads
# (rpc-*-mdN): the same calls with N small headers each (rpc_loadgen --metadata N), on each //rpc
# contestant X with (X+md) and without (X) the headers, interleaved; ratio X+md / X (the raw
# servers do not speak metadata: not run there).
# TLS workloads (rpc-*-tls): the same calls over TLS 1.3 (X+tls: the server on a "tls:" listener,
# rpc_loadgen --tls), interleaved with X in clear; ratio X+tls / X. tls-handshake: a fresh TLS
# connection per call (rpc_loadgen --handshakes) against `openssl s_time -new` on `openssl
# s_server` (openssl), the reference; ratio rpc+tls / openssl. Certificates (a CA and a P-256
# server certificate) are made with `openssl` in the run's temporary directory.
# Balancing workloads (lb-*, issue 15): tests/bench/rpc_lb_load calls through an rpc_channel
# (its balancer) to three rpc_echo_bench replicas on 127.0.0.1, .2 and .3. lb-slow: one replica
# 5x slower (--delay-us 1000 against 200: calls served one at a time), p99 latency of p2c
# (least outstanding of two random choices) against round_robin, ratio p2c / round_robin (goal
# <= 0.5). lb-scale: calls/s with 3 replicas against 1 (3-replicas / 1-replica), servers without
# delay (CPU-bound: 2 cores for the client and every server); lb-scale-d100: the same with
# 100 us of service per call on every replica (capacity bound by the replicas, not the CPUs).
#
#   tools/bench.sh [--quick] [--reps N] [--duration S] [--warmup S] [--workloads a,b,..]
#                  [--contestants a,b,..] [--rpc-contestants a,b,..] [--perf] [--no-setup]
#                  [--out DIR]
#
#   --quick        ~1 s runs (default ~3 s per run; the whole default run stays under ~12 min)
#   --reps N       repetitions per workload (default 3, at least 1; medians over them)
#   --workloads    subset of: stream pingpong pinned burst idle maxconn rpc-1x1x64-pinned
#                  rpc-16x16x64 rpc-16x16x64-md2 rpc-64x8x1024 rpc-1x64x16384
#                  rpc-16x16x64-tls rpc-1x64x16384-tls tls-handshake lb-slow lb-scale
#                  lb-scale-d100 (default: all;
#                  rpc-CxDxS is C connections x D calls in flight each x S-byte payloads; -mdN:
#                  N headers on every call; -tls: over TLS)
#   --contestants  echo workloads, subset of: epoll libuv gaio-epoll gaio-uring gaio-epoll-swap
#                  gaio-uring-swap gaio-epoll-user gaio-uring-user example (default: the first
#                  six); gaio-NAME runs gaio_echo --backend NAME; example runs
#                  examples/echo_server (what README's users copy)
#   --rpc-contestants  rpc workloads, subset of: raw raw-epoll rpc rpc-wN rpc-nostats (default:
#                  raw raw-epoll rpc);
#                  rpc-wN runs the //rpc server with N workers (rpc has 1, like-for-like with
#                  raw); rpc-nostats is rpc with its counters off (stats = -1): with both rpc and
#                  rpc-nostats, a "counters on/off" table gives rpc / rpc-nostats (goal >= 0.97)
#   --no-split     run the rpc-* workloads unpinned (default: on a machine of 2 CPUs or more,
#                  every rpc-* workload but the -pinned one runs its server on CPU 1 and the load
#                  generator on CPU 0: left to the scheduler, the two sometimes share a CPU and one
#                  run moves by up to 40%, which buries a few-percent difference)
#   --perf         also `perf record` the gaio servers during ping-pong, and the rpc server
#                  during rpc-16x16x64: top 15 symbols
#   --out DIR      results folder (default tests/bench/results/<date>)
#
# Writes DIR/results.md (machine, table, notes), DIR/raw.tsv (every run's loadgen line),
# DIR/ratios.png (chart) and DIR/perf-*.txt with --perf. Installs libuv1-dev, gnuplot-nox and
# iperf3 through tools/setup.sh when missing; builds with `bazel build -c opt //tests/bench:all`.
# The stream workload also runs iperf3 (one way, and --bidir) as the loopback's own rate.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 REPS=3 DURATION="" WARMUP="" PERF=0 SETUP=1 OUT="" SPLIT=1
WORKLOADS="stream pingpong pinned burst idle maxconn rpc-1x1x64-pinned rpc-16x16x64 rpc-16x16x64-md2 rpc-64x8x1024 rpc-1x64x16384 rpc-16x16x64-tls rpc-1x64x16384-tls tls-handshake lb-slow lb-scale lb-scale-d100"
CONTESTANTS="epoll libuv gaio-epoll gaio-uring gaio-epoll-swap gaio-uring-swap"
RPC_CONTESTANTS="raw raw-epoll rpc"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) REPS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --workloads) WORKLOADS=${2//,/ }; shift ;;
    --contestants) CONTESTANTS=${2//,/ }; shift ;;
    --rpc-contestants) RPC_CONTESTANTS=${2//,/ }; shift ;;
    --perf) PERF=1 ;;
    --no-split) SPLIT=0 ;;
    --no-setup) SETUP=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --reps needs a positive integer" >&2; exit 2; }
if [ -z "$DURATION" ]; then DURATION=$([ $QUICK = 1 ] && echo 1 || echo 3); fi
if [ -z "$WARMUP" ]; then WARMUP=$([ $QUICK = 1 ] && echo 0.3 || echo 1); fi
[ "$(nproc)" -ge 2 ] || SPLIT=0
SUFFIX=""
if [ $QUICK = 1 ]; then SUFFIX=-quick; fi
OUT=${OUT:-tests/bench/results/$(date +%Y-%m-%d)$SUFFIX}

# ---- Children: the server and load generator running now are killed on exit ----
SERVER_PID="" LG_PID=""
WORK=$(mktemp -d /tmp/gaio-bench.XXXXXX)
cleanup() {
  # LG_PID is a `timeout` process: TERM makes it end the load generator too.
  [ -n "$LG_PID" ] && kill -TERM "$LG_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  [ -n "$LG_PID" ] && wait "$LG_PID" 2>/dev/null
  rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

# ---- Setup and build ----
if [ $SETUP = 1 ]; then GAIO_EXTRA_PKGS="libuv1-dev gnuplot-nox iperf3" bash tools/setup.sh; fi
log "building (bazel build -c opt //tests/bench:all)"
bazel build -c opt --jobs=2 //tests/bench:all //examples:echo_server >"$WORK/build.log" 2>&1 || {
  cat "$WORK/build.log" >&2; exit 1; }
# A private copy: another bazel build in this tree cannot swap the binaries under the run.
mkdir -p "$WORK/bin"
cp bazel-bin/tests/bench/{loadgen,epoll_echo,uv_echo,gaio_echo,rpc_loadgen,raw_frame_echo,raw_epoll_echo,rpc_echo_bench,rpc_lb_load} "$WORK/bin/"
cp bazel-bin/examples/echo_server "$WORK/bin/"
BIN=$WORK/bin

# ---- Contestants: name -> server command (X+md: X's server, the calls with headers) ----
# gaio-epoll and gaio-uring use gaio_echo's default read style (user buffers: the faster one
# here; see results.md); the -swap/-user variants force one.
server_cmd() {
  case "$1" in
    *+md) [ "${1%+md}" != raw ] && server_cmd "${1%+md}" ;;
    *+tls) [ "${1%+tls}" != raw ] && echo "$(server_cmd "${1%+tls}") --tls $TLS_DIR" ;;
    epoll) echo "$BIN/epoll_echo" ;;
    libuv) echo "$BIN/uv_echo" ;;
    gaio-*-swap|gaio-*-user) local b=${1#gaio-}; echo "$BIN/gaio_echo --backend ${b%-*} --read ${b##*-}" ;;
    gaio-*) echo "$BIN/gaio_echo --backend ${1#gaio-}" ;;
    raw) echo "$BIN/raw_frame_echo" ;;
    raw-epoll) echo "$BIN/raw_epoll_echo" ;;
    example) echo "$BIN/echo_server" ;;
    rpc) echo "$BIN/rpc_echo_bench --workers 1" ;;
    rpc-nostats) echo "$BIN/rpc_echo_bench --workers 1 --stats off" ;;
    rpc-w[1-9]*) echo "$BIN/rpc_echo_bench --workers ${1#rpc-w}" ;;
    *) return 1 ;;
  esac
}
is_rpc() { [[ "$1" == rpc-* ]]; }
is_lb() { [[ "$1" == lb-* ]]; }
# lb_contestants WORKLOAD: the baseline first.
lb_contestants() { case "$1" in lb-slow) echo "round_robin p2c" ;; *) echo "1-replica 3-replicas" ;; esac; }
# lb_delays WORKLOAD CONTESTANT: --delay-us of each replica (one word each).
lb_delays() {
  case "$1/$2" in
    lb-slow/*) echo "200 200 1000" ;;
    lb-scale/1-replica) echo 0 ;;
    lb-scale/*) echo "0 0 0" ;;
    lb-scale-d100/1-replica) echo 100 ;;
    lb-scale-d100/*) echo "100 100 100" ;;
  esac
}
# wl_md WORKLOAD: the headers per call of an rpc-*-mdN workload (nothing for the others).
wl_md() { [[ "$1" == rpc-*-md[0-9]* ]] && echo "${1##*-md}"; return 0; }
# wl_variant WORKLOAD: md or tls for the workloads that run each //rpc contestant X as X and
# X+variant (nothing for the others).
wl_variant() {
  case "$1" in rpc-*-md[0-9]*) echo md ;; rpc-*-tls) echo tls ;; esac
  return 0
}
# variant_contestants VARIANT: each //rpc contestant without and with it (raw and raw-epoll speak
# neither).
variant_contestants() {
  local c out=""
  for c in $RPC_AVAILABLE; do [[ "$c" == raw* ]] || out="$out $c $c+$1"; done
  echo $out
}

# ---- Workloads: name -> loadgen flags, metric, unit, which way is better ----
# Connections beyond a few thousand spread over source addresses 127.0.0.2.. (--src-ips) so that
# earlier runs' TIME_WAIT ports never get in the way.
wl_args() {
  case "$1" in
    stream) echo "--mode stream --conns 1 --size 65536 --duration $DURATION --warmup $WARMUP" ;;
    pingpong) echo "--mode pingpong --conns 1000 --depth 1 --size 512 --duration $DURATION --warmup $WARMUP" ;;
    pinned) echo "--mode pingpong --conns 1 --depth 1 --size 64 --cpu 0 --duration $DURATION --warmup $WARMUP" ;;
    burst) echo "--mode burst --conns 8192 --size 1024 --src-ips 8 --timeout 60" ;;
    idle) echo "--mode idle --conns 10000 --src-ips 8 --timeout 60" ;;
    maxconn) echo "--mode maxconn --conns 40000 --procs 2 --size 16 --src-ips 8" ;;
    rpc-1x1x64-pinned) echo "--conns 1 --depth 1 --size 64 --cpu 0 --duration $DURATION --warmup $WARMUP" ;;
    rpc-16x16x64|rpc-16x16x64-md2|rpc-16x16x64-tls) echo "--conns 16 --depth 16 --size 64 --duration $DURATION --warmup $WARMUP" ;;
    rpc-64x8x1024) echo "--conns 64 --depth 8 --size 1024 --duration $DURATION --warmup $WARMUP" ;;
    rpc-1x64x16384|rpc-1x64x16384-tls) echo "--conns 1 --depth 64 --size 16384 --duration $DURATION --warmup $WARMUP" ;;
    tls-handshake) echo "--handshakes --size 64 --duration $DURATION --warmup $WARMUP" ;;
    lb-slow) echo "--window 32 --size 64 --duration $DURATION --warmup $WARMUP" ;;
    lb-scale|lb-scale-d100) echo "--window 64 --size 64 --duration $DURATION --warmup $WARMUP" ;;
    *) return 1 ;;
  esac
}
# The issue's goal for rpc/raw on each rpc workload (issue 16: at the raw-framing ceiling).
wl_goal() {
  case "$1" in
    rpc-1x1x64-pinned|rpc-16x16x64|rpc-64x8x1024) echo 1.0 ;;
    rpc-1x64x16384) echo 0.9 ;;
    rpc-*-md*) echo 0.9 ;; # X+md / X: headers cost at most 10%
    rpc-16x16x64-tls) echo 0.6 ;; # X+tls / X (issue 14)
    rpc-1x64x16384-tls) echo 0.5 ;;
    lb-slow) echo 0.5 ;; # p2c / round_robin p99: at most
  esac
}
wl_metric() {
  case "$1" in
    stream) echo "mb_s MB/s higher" ;;
    pingpong|pinned) echo "req_s req/s higher" ;;
    burst) echo "total_ms ms lower" ;;
    idle) echo "bytes_per_conn B/conn lower" ;;
    maxconn) echo "held conns higher" ;;
    rpc-*) echo "req_s calls/s higher" ;;
    tls-handshake) echo "req_s handshakes/s higher" ;;
    lb-slow) echo "p99_us us(p99) lower" ;;
    lb-*) echo "req_s calls/s higher" ;;
  esac
}
wl_title() {
  case "$1" in
    stream) echo "stream 64 KiB, 1 conn" ;;
    pingpong) echo "ping-pong 1000 conns x 512 B, depth 1" ;;
    pinned) echo "ping-pong 1 conn x 64 B, client+server on CPU 0" ;;
    burst) echo "burst 8192 conns x 1 KiB (total)" ;;
    idle) echo "idle memory per conn (RSS delta / 10k)" ;;
    maxconn) echo "max conns held (20000-fd limit)" ;;
    rpc-1x1x64-pinned) echo "rpc unary 1 conn x depth 1 x 64 B, client+server on CPU 0" ;;
    rpc-*-md*) echo "$(wl_title "${1%-md*}"), $(wl_md "$1") headers per call" ;;
    rpc-*-tls) echo "$(wl_title "${1%-tls}"), over TLS 1.3" ;;
    tls-handshake) echo "TLS 1.3 handshakes, a fresh connection per call (rpc+tls) or per handshake (openssl s_time -new)" ;;
    lb-slow) echo "p99 latency, 3 replicas, one 5x slower (200/200/1000 us per call), window 32" ;;
    lb-scale) echo "calls/s, 3 replicas against 1, no delay (CPU-bound), window 64" ;;
    lb-scale-d100) echo "calls/s, 3 replicas against 1, 100 us per call each, window 64" ;;
    rpc-*) local d=${1#rpc-}; IFS=x read -r cn dp sz <<<"$d"; echo "rpc unary $cn conns x depth $dp x $sz B" ;;
  esac
}

for c in $CONTESTANTS $RPC_CONTESTANTS; do server_cmd "$c" >/dev/null || { log "unknown contestant $c"; exit 2; }; done
ECHO_WL="" RPC_WL="" VAR_WL="" HS_WL="" LB_WL=""
for w in $WORKLOADS; do
  wl_args "$w" >/dev/null || { log "unknown workload $w"; exit 2; }
  if [ "$w" = tls-handshake ]; then HS_WL=$w
  elif is_lb "$w"; then LB_WL="$LB_WL $w"
  elif [ -n "$(wl_variant "$w")" ]; then VAR_WL="$VAR_WL $w"
  elif is_rpc "$w"; then RPC_WL="$RPC_WL $w"
  else ECHO_WL="$ECHO_WL $w"; fi
done
# Only the contestants of the selected halves are started.
[ -z "$ECHO_WL" ] && CONTESTANTS=""
[ -z "$RPC_WL$VAR_WL$HS_WL" ] && RPC_CONTESTANTS=""

# ---- TLS: a CA and a server certificate for 127.0.0.1, made for this run ----
TLS_DIR=$WORK/tls
make_tls_certs() {
  mkdir -p "$TLS_DIR"
  ( cd "$TLS_DIR"
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    key ca.key && openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=bench-ca
    key server.key && openssl req -new -key server.key -out server.csr -subj /CN=localhost
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem ) >"$WORK/tls.log" 2>&1 ||
    { cat "$WORK/tls.log" >&2; log "making the TLS certificates failed"; exit 1; }
}
[[ " $WORKLOADS " == *-tls* || -n "$HS_WL" ]] && make_tls_certs

# ---- Servers ----
SERVER_PORT=""
# start_server CONTESTANT [taskset-cpu]: sets SERVER_PID and SERVER_PORT; returns 1 (with the
# server's stderr in $WORK/server.err) when it does not come up.
start_server() {
  local cmd; cmd=$(server_cmd "$1")
  local pre=()
  [ -n "${2:-}" ] && pre=(taskset -c "$2")
  : >"$WORK/server.out"
  # shellcheck disable=SC2086  # the command is a word list on purpose
  local port_flag=--port
  [ "$1" = example ] && port_flag=-p # examples/echo_server: "-p 0", prints "...listening on H:P"
  "${pre[@]}" $cmd $port_flag 0 >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  local _
  for _ in $(seq 100); do
    SERVER_PORT=$(head -n1 "$WORK/server.out" 2>/dev/null | sed 's/.*://' || true)
    [[ "$SERVER_PORT" =~ ^[0-9]+$ ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  return 1
}
# stop_server: SIGTERM, then up to 10 s for a clean exit (counted as unclean otherwise).
UNCLEAN=0
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local _
  for _ in $(seq 200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server $SERVER_PID did not exit on SIGTERM; killed"
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    UNCLEAN=$((UNCLEAN + 1))
  fi
  local rc=0
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 137 ] && { log "server exited with $rc"; UNCLEAN=$((UNCLEAN + 1)); }
  SERVER_PID=""
  return 0
}

# ---- Availability: a contestant whose server cannot start (io_uring not available) is skipped ----
AVAILABLE="" RPC_AVAILABLE="" NOTES=()
for c in $CONTESTANTS $RPC_CONTESTANTS; do
  if start_server "$c"; then
    stop_server
    if [[ " $RPC_CONTESTANTS " == *" $c "* ]]; then RPC_AVAILABLE="$RPC_AVAILABLE $c"; else AVAILABLE="$AVAILABLE $c"; fi
  else
    why=$(head -n3 "$WORK/server.err" | tr '\n' ' ')
    log "skipping $c: not available here: $why"
    NOTES+=("$c skipped: its server did not start: ${why:-no message}")
  fi
done
[ -z "$ECHO_WL" ] || [[ " $AVAILABLE " == *" epoll "* ]] || { log "the epoll baseline must run"; exit 1; }
[ -z "$RPC_WL" ] || [[ " $RPC_AVAILABLE " == *" raw "* ]] || { log "the raw baseline must run"; exit 1; }

# ---- Runs ----
mkdir -p "$OUT"
RAW=$OUT/raw.tsv
printf 'workload\trep\tcontestant\tstatus\tresult\n' >"$RAW"

# run_one WORKLOAD CONTESTANT REP: one server, one loadgen run, one raw.tsv line.
run_one() {
  local w=$1 c=$2 rep=$3 pin="" lgpin="" args line status=ok lg=loadgen
  case "$w" in pinned|*-pinned) pin=0 ;; rpc-*) [ $SPLIT = 1 ] && pin=1 lgpin="--cpu 0" ;; esac
  { is_rpc "$w" || [ "$w" = tls-handshake ]; } && lg=rpc_loadgen
  if ! start_server "$c" $pin; then
    printf '%s\t%s\t%s\tnostart\t%s\n' "$w" "$rep" "$c" "$(head -n1 "$WORK/server.err")" >>"$RAW"
    return
  fi
  args="$(wl_args "$w") $lgpin"
  [[ "$c" == *+md ]] && args="$args --metadata $(wl_md "$w")"
  [[ "$c" == *+tls ]] && args="$args --tls $TLS_DIR"
  case "$w" in idle|maxconn) args="$args --server-pid $SERVER_PID" ;; esac
  # shellcheck disable=SC2086
  timeout -k 5 300 "$BIN/$lg" --port "$SERVER_PORT" $args >"$WORK/lg.out" 2>"$WORK/lg.err" &
  LG_PID=$!
  wait "$LG_PID" || status=fail
  LG_PID=""
  line=$(tail -n1 "$WORK/lg.out")
  [ -z "$line" ] && line=$(head -n1 "$WORK/lg.err")
  [ $status = fail ] && log "$w/$c rep $rep failed: $(head -n2 "$WORK/lg.err" | tr '\n' ' ')"
  stop_server
  # Keep both sides' messages of a failed run (the server prints its error counts at exit).
  if [ $status = fail ]; then
    { echo "== $w rep $rep $c (exit status of loadgen: failed)"
      echo "-- loadgen stdout"; cat "$WORK/lg.out"
      echo "-- loadgen stderr (first 20 lines)"; head -n 20 "$WORK/lg.err"
      echo "-- server stderr (first 20 lines)"; head -n 20 "$WORK/server.err"
    } >>"$OUT/failures.log"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$w" "$rep" "$c" "$status" "$line" >>"$RAW"
  log "$w rep $rep $c: $line"
}

# run_workloads "WORKLOADS" "CONTESTANTS": every repetition of each workload, contestants
# round-robin, rotated each repetition, so no contestant always runs first or last.
run_workloads() {
  local w rep off c all
  for w in $1; do
    for rep in $(seq "$REPS"); do
      read -r -a all <<<"$2"
      off=$(( (rep - 1) % ${#all[@]} ))
      for c in "${all[@]:off}" "${all[@]:0:off}"; do run_one "$w" "$c" "$rep"; done
      if [ "$w" = stream ]; then run_iperf3 "$rep"; fi
    done
  done
}

# The loopback's own rate, the reference of the stream workload (issue 16): iperf3 one way
# (iperf3: client to server, MB/s received) and both ways at once on one connection pair
# (iperf3-bidir: the mean of the two directions, MB/s each way), which is what an echo does.
# One raw.tsv line each, "mb_s=..." as the load generator's. Skipped when iperf3 is missing.
run_iperf3() {
  command -v iperf3 >/dev/null || return 0
  local rep=$1 c port flags line secs
  secs=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d %d", (d < 1 ? 1 : d + 0.5), (w < 1 ? 1 : w + 0.5) }')
  for c in iperf3 iperf3-bidir; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>"$WORK/server.err" &
    SERVER_PID=$!
    # Listening yet? (a probe connection would be the one-off server's one client)
    for _ in $(seq 100); do ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break; sleep 0.05; done
    flags=()
    [ $c = iperf3-bidir ] && flags=(--bidir)
    # -t: measured seconds, -O: warm-up seconds left out (whole seconds for iperf3)
    line=$(timeout -k 5 120 iperf3 -c 127.0.0.1 -p "$port" -t "${secs% *}" -O "${secs#* }" "${flags[@]}" -J 2>/dev/null |
      python3 -c 'import json, sys
e = json.load(sys.stdin)["end"]
r = [e[k]["bits_per_second"] / 8e6 for k in ("sum_received", "sum_received_bidir_reverse") if k in e]
print("mode=iperf3 directions=%d mb_s=%.1f" % (len(r), sum(r) / len(r)))' 2>/dev/null || true)
    # The one-off server exits after its client; a failed client leaves it to be stopped.
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if [ -n "$line" ]; then printf 'stream\t%s\t%s\tok\t%s\n' "$rep" "$c" "$line" >>"$RAW"
    else printf 'stream\t%s\t%s\tfail\tiperf3 printed no result\n' "$rep" "$c" >>"$RAW"; fi
    log "stream rep $rep $c: ${line:-failed}"
  done
}

# The RPC half of issue 6: unary Echo/Say over //rpc against the raw frame echo (no protobuf).
# Then issue 11's metadata workloads: each //rpc contestant without and with headers.
rpc_workloads() {
  [ -n "$RPC_WL" ] && run_workloads "$RPC_WL" "$RPC_AVAILABLE"
  local w vc
  for w in $VAR_WL; do
    vc=$(variant_contestants "$(wl_variant "$w")")
    if [ -n "$vc" ]; then run_workloads "$w" "$vc"; else log "no //rpc contestant for $w"; fi
  done
  return 0
}

# tls-handshake (rpc+tls: run_one adds --tls to rpc_loadgen --handshakes), the reference: `openssl s_time -new` (a full handshake per connection, then
# close) against `openssl s_server` on a free loopback port, with the same certificate. One
# raw.tsv line in rpc_loadgen's format: req_s = connections / wall seconds of the timed run.
run_openssl_handshakes() {
  local rep=$1 port line n t0 t1
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  openssl s_server -accept "127.0.0.1:$port" -cert "$TLS_DIR/server.pem" -key "$TLS_DIR/server.key" \
    -quiet -no_ticket >/dev/null 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  t0=$(date +%s.%N)
  n=$(timeout -k 5 300 openssl s_time -connect "127.0.0.1:$port" -new -time "${DURATION%.*}" 2>&1 |
        sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' | tail -n1)
  t1=$(date +%s.%N)
  kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [ -n "$n" ]; then
    line=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "mode=handshake reqs=%d duration_s=%.3f req_s=%.0f", n, b - a, n / (b - a) }')
    printf 'tls-handshake\t%s\topenssl\tok\t%s\n' "$rep" "$line" >>"$RAW"
  else
    printf 'tls-handshake\t%s\topenssl\tfail\ts_time printed no count\n' "$rep" >>"$RAW"
  fi
  log "tls-handshake rep $rep openssl: ${line:-failed}"
}

hs_workload() {
  [ -n "$HS_WL" ] || return 0
  [[ " $RPC_AVAILABLE " == *" rpc "* ]] || { log "tls-handshake needs the rpc contestant"; return 0; }
  local rep
  for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then run_one tls-handshake rpc+tls "$rep"; run_openssl_handshakes "$rep"
    else run_openssl_handshakes "$rep"; run_one tls-handshake rpc+tls "$rep"; fi
  done
}

# ---- Balancing (issue 15): replicas on 127.0.0.1, .2, .3 behind one rpc_channel ----
LB_PIDS=()
# lb_start "DELAYS": one rpc_echo_bench per delay (us per call, 0: none) on 127.0.0.<i>, each on
# a free port; sets LB_PIDS and LB_TARGET. Returns 1 when one does not come up.
lb_start() {
  local i=0 d port _
  LB_PIDS=() LB_TARGET=""
  for d in $1; do
    i=$((i + 1))
    "$BIN/rpc_echo_bench" --host "127.0.0.$i" --port 0 --delay-us "$d" >"$WORK/lb$i.out" 2>"$WORK/server.err" &
    LB_PIDS+=($!)
    port=""
    for _ in $(seq 100); do
      port=$(head -n1 "$WORK/lb$i.out" 2>/dev/null || true)
      [[ "$port" =~ ^[0-9]+$ ]] && break
      sleep 0.05
    done
    [[ "$port" =~ ^[0-9]+$ ]] || return 1
    LB_TARGET="$LB_TARGET${LB_TARGET:+,}127.0.0.$i:$port"
  done
}
lb_stop() {
  local p
  for p in "${LB_PIDS[@]}"; do SERVER_PID=$p; stop_server; done
  LB_PIDS=()
}
# lb_one WORKLOAD CONTESTANT REP: the replicas, one rpc_lb_load run, one raw.tsv line.
lb_one() {
  local w=$1 c=$2 rep=$3 lb=p2c status=ok line
  [ "$c" = round_robin ] && lb=round_robin
  if ! lb_start "$(lb_delays "$w" "$c")"; then
    printf '%s	%s	%s	nostart	%s
' "$w" "$rep" "$c" "$(head -n1 "$WORK/server.err")" >>"$RAW"
    lb_stop
    return
  fi
  # shellcheck disable=SC2046
  timeout -k 5 300 "$BIN/rpc_lb_load" --target "$LB_TARGET" --balancer $lb $(wl_args "$w") \
    >"$WORK/lg.out" 2>"$WORK/lg.err" &
  LG_PID=$!
  wait "$LG_PID" || status=fail
  LG_PID=""
  line=$(tail -n1 "$WORK/lg.out")
  [ -z "$line" ] && line=$(head -n1 "$WORK/lg.err")
  lb_stop
  [ $status = fail ] && { echo "== $w rep $rep $c"; cat "$WORK/lg.out"; head -n 20 "$WORK/lg.err"; } >>"$OUT/failures.log"
  printf '%s\t%s\t%s\t%s\t%s\n' "$w" "$rep" "$c" "$status" "$line" >>"$RAW"
  log "$w rep $rep $c: $line"
}
lb_workloads() {
  local w rep c all
  for w in $LB_WL; do
    for rep in $(seq "$REPS"); do
      read -r -a all <<<"$(lb_contestants "$w")"
      [ $((rep % 2)) = 0 ] && all=("${all[1]}" "${all[0]}") # alternate which runs first
      for c in "${all[@]}"; do lb_one "$w" "$c" "$rep"; done
    done
  done
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$ECHO_WL" ] && run_workloads "$ECHO_WL" "$AVAILABLE"
rpc_workloads
hs_workload
lb_workloads

# ---- perf: where a gaio server spends its time during ping-pong ----
if [ $PERF = 1 ]; then
  for c in $AVAILABLE; do
    case "$c" in gaio-*) ;; *) continue ;; esac
    start_server "$c" || continue
    # shellcheck disable=SC2046
    timeout -k 5 300 "$BIN/loadgen" --port "$SERVER_PORT" $(wl_args pingpong) >/dev/null 2>&1 &
    LG_PID=$!
    sleep "$WARMUP"
    perf record -q -g -F 2000 -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$DURATION" \
      >/dev/null 2>&1 || log "perf record failed"
    wait "$LG_PID" || true
    LG_PID=""
    stop_server
    perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
      grep -E '^ +[0-9.]+%' | sed 's/[[:space:]-]*$//' >"$WORK/perf.txt" || true
    { echo "# perf record -g -F 2000 of $c during ping-pong 1000 conns x 512 B (${DURATION} s)"
      echo "# top 15 symbols, self time ([k] kernel, [.] user; pvm_irq_enable is where the VM"
      echo "# attributes time spent with interrupts off, mostly the network stack)"
      head -n 15 "$WORK/perf.txt"
      echo "# top 15 user-space symbols"
      grep -F '[.]' "$WORK/perf.txt" | head -n 15
    } >"$OUT/perf-$c.txt"
  done
  for c in $RPC_AVAILABLE; do
    case "$c" in rpc*) ;; *) continue ;; esac
    start_server "$c" || continue
    # shellcheck disable=SC2046
    timeout -k 5 300 "$BIN/rpc_loadgen" --port "$SERVER_PORT" $(wl_args rpc-16x16x64) >/dev/null 2>&1 &
    LG_PID=$!
    sleep "$WARMUP"
    perf record -q -g -F 2000 -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$DURATION" \
      >/dev/null 2>&1 || log "perf record failed"
    wait "$LG_PID" || true
    LG_PID=""
    stop_server
    perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
      grep -E '^ +[0-9.]+%' | sed 's/[[:space:]-]*$//' >"$WORK/perf.txt" || true
    { echo "# perf record -g -F 2000 of $c during rpc-16x16x64 (${DURATION} s)"
      echo "# top 15 symbols, self time ([k] kernel, [.] user)"
      head -n 15 "$WORK/perf.txt"
      echo "# top 15 user-space symbols"
      grep -F '[.]' "$WORK/perf.txt" | head -n 15
    } >"$OUT/perf-$c.txt"
  done
fi
END=$(date +%s)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Report ----
# kv LINE KEY: the value of KEY in a loadgen line.
kv() { sed -n "s/.*[[:space:]]$2=\([^[:space:]]*\).*/\1/p" <<<" $1"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
values() { # WORKLOAD CONTESTANT KEY: that key of every ok run
  awk -F'\t' -v w="$1" -v c="$2" '$1==w && $3==c && $4=="ok" {print $5}' "$RAW" |
    while IFS= read -r l; do kv "$l" "$3"; done
}
# paired WORKLOAD A B KEY: the median over repetitions of A's KEY / B's KEY in the same
# repetition (the two ran next to each other: what moves the machine between repetitions cancels).
paired() {
  awk -F'\t' -v w="$1" -v a="$2" -v b="$3" -v k="$4" '
    function val(l) { return match(" " l, "[ \t]" k "=[^ \t]*") ? substr(" " l, RSTART + length(k) + 2, RLENGTH - length(k) - 2) : "" }
    $1 == w && $4 == "ok" && ($3 == a || $3 == b) { v[$3, $2] = val($5); reps[$2] = 1 }
    END { for (r in reps) if (v[a, r] != "" && v[b, r] + 0 > 0) print v[a, r] / v[b, r] }' "$RAW" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v >= 100) printf "%.0f", v; else printf "%.3g", v }'; }

MD=$OUT/results.md
CHART=$WORK/chart.dat
{
  echo "# gaio-c echo and RPC benchmarks, $(date -u +'%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; a 2 vCPU shared VM."
  echo "Open-files limit: $(ulimit -n) per process (server and load generator each have their own)."
  echo "Load average before/after: $LOAD0 / $LOAD1. **The machine is shared and noisy** (other agents compile on the same 2 cores), so single numbers move by tens of percent between runs: read the ratios of one run, not absolute values across runs."
  echo "Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gaio tests/bench || echo ' (+ local changes)'); $REPS repetitions, contestants interleaved round-robin (rotated each repetition); ${DURATION} s measured after ${WARMUP} s warm-up per timed run; $((END - START)) s in all. Every run starts a fresh server process."
  echo "Load generator: one process, one thread, epoll (tests/bench/loadgen.c); every echoed byte is compared with what was sent. Single-threaded servers; echo workloads unpinned except pinned; $([ $SPLIT = 1 ] && echo 'rpc-* workloads (but the -pinned one) with the server on CPU 1 and the load generator on CPU 0 (--no-split: unpinned)' || echo 'rpc-* workloads unpinned except the -pinned one')."
  echo
  echo "RPC workloads (rpc-*): unary gaio.bench.Echo/Say calls from tests/bench/rpc_loadgen (one process, one thread, epoll; frames written by hand, every reply's status, request id and body checked); raw = tests/bench/raw_frame_echo (same frames, no protobuf, one gaio watcher), raw-epoll = tests/bench/raw_epoll_echo (same frames, plain epoll, no gaio, the replies of one read in one write), rpc = tests/bench/rpc_echo_bench (rpc_server, 1 worker unless rpc-wN)."
  echo
  echo "Metadata workloads (rpc-*-mdN): the same calls, each //rpc contestant X run without (X) and with (X+md) N small headers on every REQUEST (rpc_loadgen --metadata N: \`tenant: acme\`, \`x-request-id: <8 hex, per call>\`, ...), interleaved in each repetition; the ratio is X+md / X of the same run (the raw frame echo does not speak metadata, so it is not a contestant there)."
  echo
  echo "Ratio = contestant median / baseline median (\"better\" says which way is good); the baseline is epoll for the echo workloads and raw for the rpc workloads (the rpc rows' ratio is rpc/raw; goal: the issue's target for it). For ping-pong also / libuv."
  echo
  echo "| workload | contestant | median | unit | better | p50 us | p99 us | ratio to baseline | ratio to libuv / goal | runs ok |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$MD"
: >"$CHART"
for w in $WORKLOADS; do
  read -r key unit better <<<"$(wl_metric "$w")"
  if [ -n "$(wl_variant "$w")" ]; then cs=$(variant_contestants "$(wl_variant "$w")") bname=""
  elif [ "$w" = tls-handshake ]; then cs="rpc+tls openssl" bname=openssl
  elif is_lb "$w"; then cs=$(lb_contestants "$w") bname=${cs%% *}
  elif is_rpc "$w"; then cs=$RPC_AVAILABLE bname=raw
  else cs=$AVAILABLE bname=epoll; fi
  base=$(values "$w" "$bname" "$key" | median)
  uvb=$(values "$w" libuv "$key" | median)
  for c in $cs; do
    # A metadata or TLS row's baseline is the same contestant without headers or TLS.
    [ -z "$bname" ] && base=$(values "$w" "${c%+*}" "$key" | median)
    med=$(values "$w" "$c" "$key" | median)
    ok=$(values "$w" "$c" "$key" | wc -l)
    p50=- p99=- rl=-
    case "$w" in
      lb-*)
        p50=$(fmt "$(values "$w" "$c" p50_us | median)")
        p99=$(fmt "$(values "$w" "$c" p99_us | median)")
        [ "$c" = p2c ] && rl="goal <= $(wl_goal "$w")" ;;
      rpc-*|tls-handshake)
        p50=$(fmt "$(values "$w" "$c" p50_us | median)")
        p99=$(fmt "$(values "$w" "$c" p99_us | median)")
        if [ -n "$bname" ]; then [[ "$c" != raw* ]] && [ -n "$(wl_goal "$w")" ] && rl="goal >= $(wl_goal "$w")"
        elif [[ "$c" == *+md || "$c" == *+tls ]]; then rl="goal >= $(wl_goal "$w")"; fi ;;
      pingpong|pinned)
        p50=$(fmt "$(values "$w" "$c" p50_us | median)")
        p99=$(fmt "$(values "$w" "$c" p99_us | median)")
        rl=$(ratio "$med" "$uvb") ;;
      idle) rl=$(ratio "$med" "$uvb") ;; # the epoll baseline is 0 B/conn: no ratio to it
      burst)
        p50=$(fmt "$(values "$w" "$c" p50_us | median)")
        p99=$(fmt "$(values "$w" "$c" p99_us | median)") ;;
    esac
    echo "| $(wl_title "$w") | $c | $(fmt "$med") | $unit | $better | $p50 | $p99 | $(ratio "$med" "$base") | $rl | $ok/$REPS |" >>"$MD"
    # Chart: relative performance, higher is better (lower-is-better metrics inverted).
    if [ "$better" = higher ]; then rel=$(ratio "$med" "$base"); else rel=$(ratio "$base" "$med"); fi
    # Idle memory stays out of the chart: the baseline's 0 B/conn has no ratio. A metadata
    # workload charts X+md / X only.
    [ "$w" = idle ] || is_lb "$w" || { [ -z "$bname" ] && [[ "$c" != *+* ]]; } ||
      printf '%s\t%s\t%s\n' "$w" "$c" "$rel" >>"$CHART"
  done
done
# Issue 16: each //rpc contestant against both ceilings, raw (gaio) and raw-epoll (no gaio).
if [ -n "$RPC_WL" ] && [[ " $RPC_AVAILABLE " == *" raw "* && " $RPC_AVAILABLE " == *" raw-epoll "* ]]; then
  {
    echo
    echo "Against both ceilings (medians of the same run; goal: the issue's target for X / ceiling). X / raw and X / raw-epoll are ratios of the medians; \"paired\" is the median over repetitions of the ratio within each repetition."
    echo
    echo "| workload | contestant X | X | raw | raw-epoll | unit | X / raw | X / raw-epoll | paired X / raw | paired X / raw-epoll | goal |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for w in $RPC_WL; do
      read -r key unit better <<<"$(wl_metric "$w")"
      r1=$(values "$w" raw "$key" | median) r2=$(values "$w" raw-epoll "$key" | median)
      for c in $RPC_AVAILABLE; do
        [[ "$c" == raw* ]] && continue
        x=$(values "$w" "$c" "$key" | median)
        echo "| $(wl_title "$w") | $c | $(fmt "$x") | $(fmt "$r1") | $(fmt "$r2") | $unit | $(ratio "$x" "$r1") | $(ratio "$x" "$r2") | $(ratio "$(paired "$w" "$c" raw "$key")" 1) | $(ratio "$(paired "$w" "$c" raw-epoll "$key")" 1) | >= $(wl_goal "$w") |"
      done
    done
  } >>"$MD"
fi
# Issue 16: the stream workload against the loopback's own rate (iperf3), same run.
if [[ " $WORKLOADS " == *" stream "* ]] && [ -n "$(values stream iperf3 mb_s)" ]; then
  one=$(values stream iperf3 mb_s | median) two=$(values stream iperf3-bidir mb_s | median)
  {
    echo
    echo "Stream against the loopback (iperf3 3, same run, interleaved with the stream repetitions): iperf3 one way, and iperf3 --bidir (both directions at once on one connection pair, as an echo moves every byte twice), MB/s each way"
    echo
    echo "| contestant | stream MB/s (echoed) | iperf3 one way | iperf3 both ways, each | / one way | / both ways |"
    echo "|---|---|---|---|---|---|"
    for c in $AVAILABLE; do
      x=$(values stream "$c" mb_s | median)
      echo "| $c | $(fmt "$x") | $(fmt "$one") | $(fmt "$two") | $(ratio "$x" "$one") | $(ratio "$x" "$two") |"
    done
  } >>"$MD"
fi
# Issue 13: what the server's counters cost, rpc (counters on) against rpc-nostats (off).
if [[ " $RPC_AVAILABLE " == *" rpc "* && " $RPC_AVAILABLE " == *" rpc-nostats "* ]]; then
  {
    echo
    echo "Counters on/off (rpc / rpc-nostats, same run; goal >= 0.97). \"ratio on/off\" is the ratio of the medians; \"paired\" is the median over repetitions of on/off within each repetition."
    echo
    echo "| workload | rpc (counters on) | rpc-nostats (off) | unit | ratio on/off | paired on/off | goal |"
    echo "|---|---|---|---|---|---|---|"
    for w in $RPC_WL; do
      read -r key unit better <<<"$(wl_metric "$w")"
      on=$(values "$w" rpc "$key" | median) off=$(values "$w" rpc-nostats "$key" | median)
      echo "| $(wl_title "$w") | $(fmt "$on") | $(fmt "$off") | $unit | $(ratio "$on" "$off") | $(ratio "$(paired "$w" rpc rpc-nostats "$key")" 1) | >= 0.97 |"
    done
  } >>"$MD"
fi
{
  echo
  echo "Notes"
  echo
  echo "- p50/p99 are medians over the repetitions of each run's percentile (latency from queueing a message to its last echoed byte; burst: from connect() to the echo)."
  echo "- idle: server VmRSS after 10k accepted idle connections minus before, / 10k (socket buffers are kernel memory, not in RSS). 0 means no user-space memory per idle connection."
  echo "- maxconn: connections that completed an echo while all were held open; the load generator uses 2 processes so that its own fd limit is not the one that stops it."
  echo "- rpc-*: p50/p99 are latencies from queueing a call's frame to parsing its RESPONSE; rpc-1x1x64-pinned pins the server (taskset) and the load generator to CPU 0, like pinned."
  [[ " $VAR_WL " == *-tls* ]] && echo "- rpc-*-tls: ratio = X+tls / X (the same server on a \`tls:\` listener and in clear, same run; TLS 1.3, the user-space record layer: no kTLS on this kernel); goals: 0.6 at 16x16x64, 0.5 at 1x64x16384 (issue 14)."
  [ -n "$HS_WL" ] && echo "- tls-handshake: rpc+tls = rpc_loadgen --handshakes (connect, full TLS 1.3 handshake with chain verification, one 64 B call, close; one at a time) against rpc_echo_bench --tls; openssl = \`openssl s_time -new\` (connect, full handshake, close; no verification, no call) against \`openssl s_server -no_ticket\`, the reference; ratio rpc+tls / openssl. P-256 certificate, X25519."
  [ -n "$LB_WL" ] && echo "- lb-*: tests/bench/rpc_lb_load (one rpc_channel, one thread submitting into an rpc_cq and collecting, a fixed window of calls in flight; latency from submit to collection; every reply checked) against rpc_echo_bench replicas on 127.0.0.1, .2 and .3, static target. --delay-us N replicas serve one call at a time, N us each, waited on a timer thread (no CPU burnt). lb-slow: ratio p2c / round_robin of the p99 (goal <= 0.5); the per-endpoint shares are in raw.tsv (share=). lb-scale*: ratio 3-replicas / 1-replica of calls/s."
  [[ " $VAR_WL " == *-md* ]] && echo "- rpc-*-mdN: ratio = X+md / X (the same server with and without N headers per call, same run); goal: at least 0.9."
  echo "- gaio-epoll/gaio-uring read into 64 KiB per-connection user buffers (gaio_echo --read user, the faster style here). gaio-*-swap use NULL-buffer reads (gaio_echo --read swap: read_max 64 KiB, swap_size 4 MiB) plus a copy into a per-connection buffer allocated at the first data. epoll_echo and uv_echo read 64 KiB at a time into one shared buffer."
  for n in "${NOTES[@]}"; do echo "- $n"; done
  fails=$(awk -F'\t' 'NR > 1 && $4 != "ok"' "$RAW" | wc -l)
  [ "$fails" -gt 0 ] && echo "- $fails run(s) failed or did not start; see raw.tsv and failures.log (their rows are left out of the medians)."
  [ "$UNCLEAN" -gt 0 ] && echo "- $UNCLEAN server exit(s) on SIGTERM were not clean."
  for f in "$OUT"/perf-*.txt; do
    [ -e "$f" ] || continue
    echo
    echo '```'
    cat "$f"
    echo '```'
  done
} >>"$MD"

# ---- Chart ----
if command -v gnuplot >/dev/null && [ -s "$CHART" ]; then
  # One column per contestant, one group per workload.
  CHART_CS="$AVAILABLE $RPC_AVAILABLE"
  for v in md tls; do
    [[ " $VAR_WL " == *-$v* ]] || continue
    for c in $RPC_AVAILABLE; do [[ "$c" == raw* ]] || CHART_CS="$CHART_CS $c+$v"; done
  done
  awk -F'\t' -v cs="$CHART_CS" '
    BEGIN { n = split(cs, c, " "); printf "workload"; for (i = 1; i <= n; i++) printf "\t%s", c[i]; print "" }
    { v[$1, $2] = ($3 == "-" ? "NaN" : $3); if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
    END { for (j = 1; j <= m; j++) { printf "%s", order[j]; for (i = 1; i <= n; i++) printf "\t%s", v[order[j], c[i]]; print "" } }
  ' "$CHART" >"$WORK/chart.tsv"
  ncols=$(($(wc -w <<<"$CHART_CS") + 1))
  gnuplot <<EOF || log "gnuplot failed"
set terminal pngcairo size 1100,500 font ",10"
set output "$OUT/ratios.png"
set title "Relative to the baseline (epoll; raw for rpc-*; X for X+md), same run (higher is better; medians of $REPS; idle memory: see the table)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top autotitle columnheader
set yrange [0:*]
set grid ytics
set xtics rotate by -25
set bmargin 5
set datafile separator "\t"
set datafile missing "NaN"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot for [i=2:$ncols] "$WORK/chart.tsv" using i:xtic(1)
EOF
  echo >>"$MD"
  echo "![ratios](ratios.png)" >>"$MD"
fi
cp "$CHART" "$OUT/ratios.tsv"
log "wrote $MD"
cat "$MD"
