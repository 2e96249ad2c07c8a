#!/usr/bin/env bash
# CPU of one joule-job-supervisor with its job (`true` as nobody, the
# agent's PATH), started as the agent starts it, under perf stat -r N:
# task-clock of the supervisor and its child, page faults, context
# switches, and the CPU every kernel thread spent meanwhile (per run).
# CGROUPS: hybrid (v2 tracking dir + v1 memory and cpu dirs, what a job
# got on a hybrid host before), v2only (the v2 dir alone, what a job
# without limits gets there now), none.
# Usage (as root, from the repo root, on a hybrid host for hybrid):
#   bench/loadgen/supervisor_cost.sh build/bin 40 v2only
set -eu
cd "$(dirname "$0")/../.."
BIN=$1; N=${2:-50}; MODE=${3:-v2only}
D=$(mktemp -d)
mkdir -p "$D/state" "$D/logs"
CG=joule-supcost-$$
args=()
case $MODE in
  hybrid) mkdir -p /sys/fs/cgroup/unified/$CG /sys/fs/cgroup/memory/$CG /sys/fs/cgroup/cpu/$CG
    args=(--cgroup /sys/fs/cgroup/unified/$CG/job-1.1 --cgroup-v1 /sys/fs/cgroup/memory/$CG/job-1.1
          --cgroup-v1 /sys/fs/cgroup/cpu/$CG/job-1.1) ;;
  v2only) mkdir -p /sys/fs/cgroup/unified/$CG; args=(--cgroup /sys/fs/cgroup/unified/$CG/job-1.1) ;;
  none) ;;
esac
source bench/loadgen/joule_cluster.sh  # kernel_thread_ticks
k0=$(kernel_thread_ticks)
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ perf stat -r "$N" \
  -e task-clock,page-faults,context-switches -x, -o "$D/perf.txt" \
  "$BIN/joule-job-supervisor" --record "$D/state/job-1.1" --log "$D/logs/job-1.1.log" \
  --note gpus=0 --note energy_at_start_mj=0 --note boot_id=x \
  --uid 65534 --gid 65534 --groups 65534 "${args[@]}" -- true
k1=$(kernel_thread_ticks)
awk -F, -v n="$N" -v k=$((k1 - k0)) '
  /task-clock/ {printf "task-clock %.3f ms ", $1}
  /page-faults/ {printf "faults %d ", $1}
  /context-switches/ {printf "cs %d ", $1}
  END {printf "kernel threads %.3f ms/run\n", k * 10 / n}' "$D/perf.txt"
for c in unified memory cpu; do rmdir /sys/fs/cgroup/$c/$CG 2>/dev/null || true; done
rm -rf "$D"
