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
source bench/loadgen/joule_cluster.sh
start() { # name bin
  joule_cluster "$WORK/$1" "$2" "$1" || exit 1
  SRV[$1]=$JOULE_SERVER; TOK[$1]=$TENANT_TOKEN; JPID[$1]=$JOULED_PID; APIDS[$1]="${AGENT_PIDS[*]}"
}
cpu() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
array() { # name bin
  local name=$1 bin=$2 d=$WORK/$1
  export JOULE_CA=$d/pki/ca.crt JOULE_SERVER=${SRV[$name]} JOULE_TOKEN_FILE=$d/db/operator.token
  local j0 a0=0 a1=0 k0 k1 t0 t1 l0
  l0=$(cut -d' ' -f1 /proc/loadavg)
  j0=$(cpu ${JPID[$name]}); for p in ${APIDS[$name]}; do a0=$((a0 + $(cpu $p))); done; k0=$(kernel_thread_ticks); t0=$(date +%s%N)
  JOULE_TOKEN_FILE=${TOK[$name]} $bin/joulectl job submit --array 0-$((N - 1)) --gpus 1 -- true >/dev/null
  while [ "$($bin/joulectl job list --state pending,starting,running | tail -n +2 | wc -l)" != 0 ]; do sleep 0.05; done
  t1=$(date +%s%N); k1=$(kernel_thread_ticks)
  local j1; j1=$(cpu ${JPID[$name]}); for p in ${APIDS[$name]}; do a1=$((a1 + $(cpu $p))); done
  awk -v n=$N -v nm=$name -v l=$l0 -v t=$((t1 - t0)) -v j=$((j1 - j0)) -v a=$((a1 - a0)) -v k=$((k1 - k0)) 'BEGIN {printf "%s load %s: %.1f tasks/s, jouled %.2f ms/task, agents+supervisors+jobs %.2f ms/task, kernel threads %.2f ms/task\n", nm, l, n*1e9/t, j*10/n, a*10/n, k*10/n}'
}
start old "$OLD_BIN"
start new "$NEW_BIN"
array old "$OLD_BIN" >/dev/null; array new "$NEW_BIN" >/dev/null  # warm-up
for r in $(seq "$ROUNDS"); do array old "$OLD_BIN"; array new "$NEW_BIN"; done
