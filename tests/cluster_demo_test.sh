#!/usr/bin/env bash
# tools/cluster_demo.sh in a short run (9 s): exit 0, no failed call, the replica on 127.0.0.2
# answering nothing for at least one whole second while it is down, and every replica answering
# calls in the last second reported (after its restart).
# Arguments: cluster_demo.sh, kv_server, kv_load.
set -uo pipefail
demo=$1 kv_server=$2 kv_load=$3
out=$(bash "$demo" --seconds 9 --window 8 --kv-server "$kv_server" --kv-load "$kv_load" 2>&1)
rc=$?
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
[ $rc -eq 0 ] || fail "cluster_demo.sh exited with $rc"
summary=$(grep '^kv_load: summary ' <<<"$out") || fail "no summary line"
[[ "$summary" == *" failed=0 "* ]] || fail "failed calls: $summary"
[[ "$summary" =~ calls=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || fail "no calls: $summary"
last=${summary##*last_second=}
n=0
for e in ${last//,/ }; do
  [[ "$e" =~ ^127\.0\.0\.[123]:[0-9]+=([0-9]+)$ ]] || fail "bad entry $e in: $summary"
  [ "${BASH_REMATCH[1]}" -gt 0 ] || fail "no traffic on ${e%=*} in the last second: $summary"
  n=$((n + 1))
done
[ $n -eq 3 ] || fail "$n replicas in the last second, not 3: $summary"
# Between the kill and the restart: a report with 0 calls on 127.0.0.2.
between=$(sed -n '/killed the replica/,/started the replica/p' <<<"$out")
grep -qE '127\.0\.0\.2:[0-9]+ +0/s' <<<"$between" || fail "127.0.0.2 kept traffic while down"
echo "ok: cluster_demo.sh"
