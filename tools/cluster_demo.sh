#!/usr/bin/env bash
# Three replicas behind one DNS name (issue 15): dnsmasq on 127.0.0.1 at a free port serves
# kv.demo.test -> 127.0.0.1, 127.0.0.2, 127.0.0.3; three kv_server replicas listen on those
# addresses with one shared port; kv_load calls dns:///kv.demo.test:PORT through that resolver
# (p2c balancing, Get and Put idempotent) and prints, once a second, the calls each replica
# answered and the failed calls. A third of the way in, the replica on 127.0.0.2 is killed
# (SIGKILL: no goodbye); at two thirds it is started again. The traffic moves off it and back,
# and no call fails (the ones it left unanswered are retried on the others).
#
#   tools/cluster_demo.sh [--seconds N] [--window W] [--kv-server PATH --kv-load PATH]
#
#   --seconds N   the whole run (default 15, at least 6)
#   --window W    kv_load's calls in flight (default 16)
#   --kv-server, --kv-load   prebuilt binaries (default: `bazel build` them here)
#
# Exits with kv_load's status: 0 when no call failed. Every process it started is stopped on
# exit (also on Ctrl-C). Needs dnsmasq (Debian dnsmasq-base, installed by tools/setup.sh).
set -euo pipefail

SECONDS_TOTAL=15 WINDOW=16 KV_SERVER="" KV_LOAD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_TOTAL=$2; shift ;;
    --window) WINDOW=$2; shift ;;
    --kv-server) KV_SERVER=$2; shift ;;
    --kv-load) KV_LOAD=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "cluster_demo: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$SECONDS_TOTAL" =~ ^[0-9]+$ && "$SECONDS_TOTAL" -ge 6 ]] ||
  { echo "cluster_demo: --seconds needs a whole number >= 6" >&2; exit 2; }
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[ -x "$DNSMASQ" ] || { echo "cluster_demo: dnsmasq not found (tools/setup.sh installs it)" >&2; exit 1; }

if [ -z "$KV_SERVER" ] || [ -z "$KV_LOAD" ]; then
  cd "$(dirname "$0")/.."
  bazel build --jobs=2 //examples:kv_server //examples:kv_load >/dev/null 2>&1 ||
    { echo "cluster_demo: bazel build //examples:kv_server //examples:kv_load failed" >&2; exit 1; }
  KV_SERVER=bazel-bin/examples/kv_server KV_LOAD=bazel-bin/examples/kv_load
fi

WORK=$(mktemp -d "${TEST_TMPDIR:-/tmp}/cluster_demo.XXXXXX")
PIDS=()  # every process started here
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "cluster_demo: $*"; }

free_port() { # free_port tcp|udp: a port free on 127.0.0.1 now
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
# dns_port: a port for dnsmasq, which binds it for UDP and TCP: below the ephemeral range
# (32768 up), so no port-0 bind or outgoing connection takes it, and free for both now.
dns_port() {
  python3 -c 'import random, socket
for _ in range(1000):
    p = random.randrange(20000, 32000)
    try:
        for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, t) as s: s.bind(("127.0.0.1", p))
    except OSError: continue
    print(p); break'
}

# ---- dnsmasq: the hosts file is the whole zone; a port taken meanwhile: try another ----
printf '127.0.0.1 kv.demo.test\n127.0.0.2 kv.demo.test\n127.0.0.3 kv.demo.test\n' >"$WORK/hosts"
DNS_PORT=""
for _ in 1 2 3 4 5; do
  port=$(dns_port)
  user=()
  [ "$(id -u)" = 0 ] && user=(--user=root)
  "$DNSMASQ" --no-daemon --port="$port" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
    --no-hosts --addn-hosts="$WORK/hosts" --conf-file=/dev/null --pid-file= \
    --log-facility=/dev/null "${user[@]}" 2>"$WORK/dnsmasq.err" &
  pid=$!
  sleep 0.3
  if kill -0 "$pid" 2>/dev/null; then PIDS+=("$pid"); DNS_PORT=$port; break; fi
  wait "$pid" 2>/dev/null || true
done
[ -n "$DNS_PORT" ] || { echo "cluster_demo: dnsmasq did not start: $(cat "$WORK/dnsmasq.err")" >&2; exit 1; }
say "dnsmasq on 127.0.0.1:$DNS_PORT: kv.demo.test -> 127.0.0.1 127.0.0.2 127.0.0.3"

# ---- Replicas: one port on the three addresses ----
REPLICA=() # pid of the replica on 127.0.0.<i>
# start_replica I: kv_server on 127.0.0.I:$KV_PORT; returns 1 if it does not print its address.
start_replica() {
  local i=$1 out="$WORK/kv$1.out" _
  "$KV_SERVER" -a "127.0.0.$i:$KV_PORT" >"$out" 2>&1 &
  REPLICA[$i]=$!
  PIDS+=("$!")
  for _ in $(seq 100); do
    grep -q "listening on" "$out" 2>/dev/null && return 0
    kill -0 "${REPLICA[$i]}" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
started=0
for _ in 1 2 3; do
  KV_PORT=$(free_port tcp)
  if start_replica 1 && start_replica 2 && start_replica 3; then started=1; break; fi
  for i in 1 2 3; do [ -n "${REPLICA[$i]:-}" ] && kill -KILL "${REPLICA[$i]}" 2>/dev/null || true; done
done
[ $started = 1 ] || { echo "cluster_demo: a replica did not start: $(cat "$WORK"/kv*.out)" >&2; exit 1; }
say "kv_server replicas on 127.0.0.1:$KV_PORT, 127.0.0.2:$KV_PORT, 127.0.0.3:$KV_PORT"

# ---- The client, and the replica on 127.0.0.2 killed, then started again ----
TARGET="dns:///kv.demo.test:$KV_PORT"
say "kv_load -a $TARGET --resolver 127.0.0.1:$DNS_PORT -d $SECONDS_TOTAL -w $WINDOW"
"$KV_LOAD" -a "$TARGET" --resolver "127.0.0.1:$DNS_PORT" -d "$SECONDS_TOTAL" -w "$WINDOW" &
LOAD=$!
PIDS+=("$LOAD")
third=$(awk -v s="$SECONDS_TOTAL" 'BEGIN { printf "%.1f", s / 3 }')
sleep "$third"
kill -KILL "${REPLICA[2]}"
wait "${REPLICA[2]}" 2>/dev/null || true
say "killed the replica on 127.0.0.2 (SIGKILL)"
sleep "$third"
start_replica 2 || { echo "cluster_demo: the replica on 127.0.0.2 did not restart" >&2; exit 1; }
say "started the replica on 127.0.0.2 again"
rc=0
wait "$LOAD" || rc=$?
say "kv_load exited with $rc"
exit $rc
