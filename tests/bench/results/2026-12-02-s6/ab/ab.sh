#!/bin/bash
# ab.sh ROUNDS "label:dir:server-args ..." [loadgen args]
ROUNDS=$1; shift; IFS="|" read -r -a CONTS <<<"$1"; shift; LGARGS=${*:---conns 1 --depth 1 --size 64 --cpu 0 --duration 2 --warmup 0.5}
SPIN=${SPIN:-0}
for r in $(seq $ROUNDS); do
  n=${#CONTS[@]}; off=$(( (r-1) % n ))
  for c in "${CONTS[@]:off}" "${CONTS[@]:0:off}"; do
    IFS=: read -r label dir sargs <<<"$c"
    taskset -c $SPIN /tmp/ab/$dir/$sargs --port 0 >/tmp/ab/srv.out 2>/tmp/ab/srv.err &
    pid=$!
    for i in $(seq 100); do port=$(head -n1 /tmp/ab/srv.out | sed 's/.*://'); [[ "$port" =~ ^[0-9]+$ ]] && break; sleep 0.05; done
    out=$(/tmp/ab/base/rpc_loadgen --port $port $LGARGS 2>&1 | tail -n1)
    kill -TERM $pid; wait $pid
    echo -e "$r\t$label\t$out"
  done
done
