#!/usr/bin/env bash
# The node's cost of an array task, two builds side by side: one cluster
# per build (jouled + 4 simulated agents x 8 GPUs, TLS, tokens, jobs as
# nobody, as bench/loadgen/e2e_jobs.sh sets up), one array of N `true`
# tasks on each in turn, ROUNDS times (after one warm-up each).
# CPU per task from /proc/PID/stat: jouled utime+stime; the 4 agents
# utime+stime+cutime+cstime (their supervisors and the jobs are their
# reaped children); every kernel thread's utime+stime (memcg and inode
# work the kernel defers; the whole machine's, so others' too).
# Usage (as root, from the repo root):
#   OLD_BIN=build-old/bin NEW_BIN=build/bin N=500 ROUNDS=4 bench/loadgen/array_cpu_pair.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}; ROUNDS=${ROUNDS:-3}
OLD_BIN=${OLD_BIN:-build-old/bin}; NEW_BIN=${NEW_BIN:-build/bin}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
declare -A SRV TOK JPID APIDS
start() { # name bin
  local name=$1 bin=$2 d=$WORK/$1; rm -rf $d; mkdir -p $d
  bash scripts/dev-pki.sh "$d/pki" $name-1 $name-2 $name-3 $name-4 >/dev/null 2>&1
  local port=$((20000 + RANDOM % 20000))
  SRV[$name]=127.0.0.1:$port
  $bin/jouled --listen ${SRV[$name]} --data-dir $d/db --tls-cert $d/pki/server.crt --tls-key $d/pki/server.key --tls-ca $d/pki/ca.crt --metrics-listen 127.0.0.1:0 >$d/jouled.log 2>&1 &
  JPID[$name]=$!; PIDS+=($!)
  export JOULE_CA=$d/pki/ca.crt JOULE_SERVER=${SRV[$name]} JOULE_TOKEN_FILE=$d/db/operator.token
  for i in $(seq 100); do [ -s $JOULE_TOKEN_FILE ] && $bin/joulectl tenant list >/dev/null 2>&1 && break; sleep 0.1; done
  local a=""
  for n in 1 2 3 4; do
    $bin/joule-agent --server ${SRV[$name]} --node-name $name-$n --log-dir $d/logs-$n --ca $d/pki/ca.crt --tls-cert $d/pki/$name-$n.crt --tls-key $d/pki/$name-$n.key --state-dir $d/state-$n --job-user nobody >$d/agent-$n.log 2>&1 &
    PIDS+=($!); a="$a $!"
  done
  APIDS[$name]=$a
  for i in $(seq 100); do [ "$($bin/joulectl node list | grep -c ' ready ')" = 4 ] && break; sleep 0.1; done
  $bin/joulectl tenant create bench >/dev/null
  $bin/joulectl token create --role tenant --tenant bench 2>/dev/null >$d/bench.token
  TOK[$name]=$d/bench.token
}
cpu() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
kt() { for f in /proc/[0-9]*/stat; do { read -r l < $f; } 2>/dev/null || continue; set -- ${l##*) }; [ "$2" = 2 ] && echo $(( ${12} + ${13} )); done | awk '{s+=$1} END{print s}'; }
array() { # name bin
  local name=$1 bin=$2 d=$WORK/$1
  export JOULE_CA=$d/pki/ca.crt JOULE_SERVER=${SRV[$name]} JOULE_TOKEN_FILE=$d/db/operator.token
  local j0 a0=0 a1=0 k0 k1 t0 t1 l0
  l0=$(cut -d' ' -f1 /proc/loadavg)
  j0=$(cpu ${JPID[$name]}); for p in ${APIDS[$name]}; do a0=$((a0 + $(cpu $p))); done; k0=$(kt); t0=$(date +%s%N)
  JOULE_TOKEN_FILE=${TOK[$name]} $bin/joulectl job submit --array 0-$((N - 1)) --gpus 1 -- true >/dev/null
  while [ "$($bin/joulectl job list --state pending,starting,running | tail -n +2 | wc -l)" != 0 ]; do sleep 0.05; done
  t1=$(date +%s%N); k1=$(kt)
  local j1; j1=$(cpu ${JPID[$name]}); for p in ${APIDS[$name]}; do a1=$((a1 + $(cpu $p))); done
  awk -v n=$N -v nm=$name -v l=$l0 -v t=$((t1 - t0)) -v j=$((j1 - j0)) -v a=$((a1 - a0)) -v k=$((k1 - k0)) 'BEGIN {printf "%s load %s: %.1f tasks/s, jouled %.2f ms/task, agents+supervisors+jobs %.2f ms/task, kernel threads %.2f ms/task\n", nm, l, n*1e9/t, j*10/n, a*10/n, k*10/n}'
}
start old "$OLD_BIN"
start new "$NEW_BIN"
array old "$OLD_BIN" >/dev/null; array new "$NEW_BIN" >/dev/null  # warm-up
for r in $(seq "$ROUNDS"); do array old "$OLD_BIN"; array new "$NEW_BIN"; done
