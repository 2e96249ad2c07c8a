#!/usr/bin/env bash
# Joule and Slurm side by side, in one run, on the same machine and the same
# cluster shape: 4 nodes x 8 GPUs on 127.0.0.1. See bench/vs-slurm/README.md
# for the Slurm settings and why each one is there.
#
#   bench/vs-slurm/run.sh            # every workload, 1,000 jobs
#   JOBS=200 bench/vs-slurm/run.sh   # smaller, for a quick check
#   NO_BUILD=1 bench/vs-slurm/run.sh # use build/bin as it is
#   ONLY=joule|slurm bench/vs-slurm/run.sh  # one side only (no ratio)
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge if they are
# missing (needs root: slurmd launches jobs), builds jouled, joule-agent and
# joulectl into build/ (BUILD_DIR=), starts munged + slurmctld + 4 slurmd
# and jouled + 4 joule-agents in a state dir of their own under /tmp, runs
#   (a) JOBS trivial 1-GPU jobs, one CLI process per job, one after another;
#       first submit -> all done
#   (b) the same with PAR (8) submitters at a time
#   (c) one array of JOBS tasks; submit -> all done
#   (d) one job, submit -> done (the submitting shell sees it), median of
#       SAMPLES (20)
#   (e) one listing CLI call (squeue / joulectl job list), wall, median of
#       SAMPLES; also the CLI's start-up alone (--version / --help)
#   (f) the control plane's resident memory (VmRSS of slurmctld / jouled)
#       with JOBS jobs queued (nodes drained, so nothing runs)
# and prints one table (Slurm, Joule, Joule's advantage) that also goes to
# $OUT_DIR/vs-slurm.txt (default bench-results/). Stops what it started, by
# pid, and removes its state dir (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
BIN=$ROOT/$BUILD_DIR/bin
JOBS=${JOBS:-1000}
PAR=${PAR:-8}
SAMPLES=${SAMPLES:-20}
OUT_DIR=${OUT_DIR:-bench-results}
ONLY=${ONLY:-}
mkdir -p "$OUT_DIR"

log() { echo "[vs-slurm $(date -u +%H:%M:%S)] $*" >&2; }

# ------------------------------------------------------------- packages ----
if [[ $ONLY != joule ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "vs-slurm: the Slurm side needs root (slurmd starts jobs); run as root or ONLY=joule" >&2
    exit 2
  fi
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
     ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
  fi
fi
if [[ ${NO_BUILD:-0} != 1 && $ONLY != slurm ]]; then
  log "building jouled joule-agent joulectl in $BUILD_DIR/"
  [[ -f $BUILD_DIR/build.ninja ]] || cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" --target jouled joule-agent joulectl -j2 >/dev/null
fi

# ---------------------------------------------------------------- state ----
STATE=$(mktemp -d /tmp/joule-vs-slurm.XXXXXX)
chmod 755 "$STATE"
PIDS=()  # everything this script started, in start order
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  cg_cleanup
  if [[ ${KEEP:-0} == 1 ]]; then log "state kept in $STATE"; else rm -rf "$STATE"; fi
}
trap cleanup EXIT
# CPU accounting, independent of how loaded the machine is: each side runs
# in a cgroup of its own (cgroup v1 cpuacct, or v2 cpu.stat), entered by this
# shell before it starts that side's daemons, so every process of the side
# (daemons, CLI processes, slurmstepd, supervisors, the jobs, the polls) is
# counted, orphans included. cpu_ms SIDE prints the CPU ms used so far.
CG_ROOT=""
if [[ -d /sys/fs/cgroup/cpuacct && -w /sys/fs/cgroup/cpuacct ]]; then
  CG_ROOT=/sys/fs/cgroup/cpuacct CG_KIND=v1
elif [[ -f /sys/fs/cgroup/cgroup.controllers && -w /sys/fs/cgroup ]]; then
  CG_ROOT=/sys/fs/cgroup CG_KIND=v2
fi
CG_BASE=""
if [[ -n $CG_ROOT ]]; then
  CG_BASE=$CG_ROOT/$(basename "$STATE")
  CG_HOME=$(awk -F: -v k="$([[ $CG_KIND == v1 ]] && echo cpuacct)" \
    '($2 == k || (k == "" && $1 == 0)) {print $3}' /proc/self/cgroup | head -1)
  mkdir -p "$CG_BASE/slurm" "$CG_BASE/joule" 2>/dev/null || CG_BASE=""
fi
enter_cg() { [[ -z $CG_BASE ]] || echo $BASHPID >"$CG_BASE/$1/cgroup.procs"; }
cpu_ms() {
  if [[ -z $CG_BASE ]]; then echo n/a
  elif [[ $CG_KIND == v1 ]]; then awk '{printf "%.0f\n", $1 / 1e6}' "$CG_BASE/$1/cpuacct.usage"
  else awk '/^usage_usec/ {printf "%.0f\n", $2 / 1e3}' "$CG_BASE/$1/cpu.stat"; fi
}
# per_job_ms START_MS END_MS N: CPU ms per job
per_job_ms() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {if (a == "n/a") print "n/a"; else printf "%.1f", (b - a) / n}'; }
cg_cleanup() {
  [[ -n $CG_BASE ]] || return 0
  echo $BASHPID >"$CG_ROOT${CG_HOME:-}/cgroup.procs" 2>/dev/null || true
  rmdir "$CG_BASE/slurm" "$CG_BASE/joule" "$CG_BASE" 2>/dev/null || true
}
source bench/loadgen/joule_cluster.sh  # free_port, joule_cluster
now_ms() { echo "${EPOCHREALTIME/./}" | awk '{printf "%.3f", $1 / 1000}'; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# The private part of it: RssAnon (heap, stacks), without the pages of the
# binary and shared libraries that are mapped from files.
anon_kib() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
# wait_until TIMEOUT_S CMD...: polls CMD every $POLL s (10 ms by default;
# the bulk rows poll every 50 ms so that the polling costs little CPU)
POLL=0.01
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    if ((SECONDS > deadline)); then return 1; fi
    sleep "$POLL"
  done
}
declare -A R  # results: R[side.key]
# samples CMD...: runs CMD (stdout discarded) $SAMPLES times; prints each
# run's wall time in ms, one a line (pipe it to median)
samples() {
  local i t0 t1
  for ((i = 0; i < SAMPLES; i++)); do
    t0=$(now_ms); "$@" >/dev/null; t1=$(now_ms)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'
  done
}
# The smaller of two medians: the faster of a side's two ways to row (d).
faster() { printf '%s\n%s\n' "$1" "$2" | sort -g | head -1; }

# Sets R[SIDE.ROW] (jobs/s since T0_MS) and R[SIDE.ROW_cpu] (ms of the
# side's CPU per job since C0): row_result SIDE ROW C0 T0_MS [KEY]
# (KEY: the results' prefix, default SIDE; joule_s for the session rows)
row_result() {
  local t1 key=${5:-$1}
  t1=$(now_ms)
  R[$key.$2_cpu]=$(per_job_ms "$3" "$(cpu_ms "$1")" "$JOBS")
  R[$key.$2]=$(awk -v n="$JOBS" -v a="$4" -v b="$t1" 'BEGIN {printf "%.1f", n * 1000 / (b - a)}')
}
# Rows (a) and (b) of one side, the same code for both: JOBS runs of the
# function SUBMIT (one CLI process, one job) one after another, then PAR at
# a time, each row until the function ACTIVE says no job is left.
#   bench_rows SIDE SUBMIT ACTIVE [KEY]
bench_rows() {
  local side=$1 submit=$2 active=$3 key=${4:-$1} c0 t0
  log "$side (a): $JOBS sequential $submit"
  c0=$(cpu_ms "$side"); t0=$(now_ms)
  for ((i = 0; i < JOBS; i++)); do "$submit"; done
  POLL=0.05 wait_until 600 "$active"
  row_result "$side" a "$c0" "$t0" "$key"

  log "$side (b): $JOBS $submit, $PAR at a time"
  export -f "$submit"
  c0=$(cpu_ms "$side"); t0=$(now_ms)
  seq 1 "$JOBS" | xargs -P "$PAR" -I{} bash -c "$submit"
  POLL=0.05 wait_until 600 "$active"
  row_result "$side" b "$c0" "$t0" "$key"
}

# ---------------------------------------------------------------- Slurm ----
start_slurm() {
  local S=$STATE/slurm
  mkdir -p "$S"/{munge,ctld,log,dev} && chmod 700 "$S/munge"
  # Munge: our own key, socket, pid and log, so a system munged (if any)
  # is left alone.
  dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$S/munge/munge.key"
  munged --foreground --force --socket="$S/munge/munge.sock" \
    --key-file="$S/munge/munge.key" --pid-file="$S/munge/munged.pid" \
    --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" \
    --num-threads=4 >"$S/log/munged.out" 2>&1 &
  PIDS+=($!)
  wait_until 10 test -S "$S/munge/munge.sock" || { cat "$S/log/munged.out" "$S/munge/munged.log" >&2; exit 1; }
  for g in 0 1 2 3 4 5 6 7; do : >"$S/dev/gpu$g"; done
  local ctld_port d1 d2 d3 d4
  ctld_port=$(free_port); d1=$(free_port); d2=$(free_port); d3=$(free_port); d4=$(free_port)
  cat >"$S/gres.conf" <<EOF
AutoDetect=off
NodeName=sn[1-4] Name=gpu File=$S/dev/gpu[0-7]
EOF
  # Settings: see bench/vs-slurm/README.md (high-throughput guide).
  cat >"$S/slurm.conf" <<EOF
ClusterName=jbench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool-%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
SlurmctldDebug=error
SlurmdDebug=error
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
LaunchType=launch/slurm
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,default_queue_depth=1000,sched_max_job_start=0,max_rpc_cnt=0
MaxJobCount=100000
MaxArraySize=100001
MinJobAge=300
MessageTimeout=30
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmdTimeout=300
GresTypes=gpu
NodeName=sn1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$d1 CPUs=8 RealMemory=8000 Gres=gpu:8 State=UNKNOWN
NodeName=sn2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$d2 CPUs=8 RealMemory=8000 Gres=gpu:8 State=UNKNOWN
NodeName=sn3 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$d3 CPUs=8 RealMemory=8000 Gres=gpu:8 State=UNKNOWN
NodeName=sn4 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$d4 CPUs=8 RealMemory=8000 Gres=gpu:8 State=UNKNOWN
PartitionName=gpu Nodes=sn[1-4] Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$S/slurm.conf
  slurmctld -D -c -i -f "$S/slurm.conf" >"$S/log/slurmctld.out" 2>&1 &
  SLURMCTLD_PID=$!
  PIDS+=($SLURMCTLD_PID)
  wait_until 20 bash -c 'scontrol ping | grep -q UP' ||
    { cat "$S/log/slurmctld.out" "$S/log/slurmctld.log" >&2; exit 1; }
  for n in 1 2 3 4; do
    slurmd -D -N "sn$n" -f "$S/slurm.conf" >"$S/log/slurmd-sn$n.out" 2>&1 &
    PIDS+=($!)
  done
  idle4() { [[ $(sinfo -h -N -t idle -o %N | sort -u | wc -l) == 4 ]]; }
  wait_until 60 idle4 || { sinfo -N >&2; tail -n 20 "$S"/log/* >&2; exit 1; }
  log "slurm: slurmctld pid $SLURMCTLD_PID, 4 slurmd idle"
}
slurm_active() { [[ $(squeue -h -t PD,CF,R,CG -o %i | wc -l) == 0 ]]; }
slurm_submit() { sbatch -Q --gres=gpu:1 -n1 -o /dev/null -e /dev/null --wrap true >/dev/null; }
slurm_done() { scontrol -o show job "$1" | grep -q JobState=COMPLETED; }
# One job, submitted and polled until it has completed.
slurm_one() {
  local id
  id=$(sbatch --parsable --gres=gpu:1 -n1 -o /dev/null -e /dev/null --wrap true)
  wait_until 60 slurm_done "$id"
}
bench_slurm() {
  local t0 c0
  bench_rows slurm slurm_submit slurm_active

  log "slurm (c): one array of $JOBS"
  c0=$(cpu_ms slurm); t0=$(now_ms)
  sbatch -Q --array="0-$((JOBS - 1))" --gres=gpu:1 -n1 -o /dev/null -e /dev/null --wrap true >/dev/null
  POLL=0.05 wait_until 600 slurm_active
  row_result slurm c "$c0" "$t0"

  log "slurm (d): one job, submit -> done, x$SAMPLES"
  R[slurm.d_sbatch]=$(samples slurm_one | tee "$STATE/slurm-d.txt" | median)
  # srun blocks until its job has ended (sbatch --wait would sleep >= 2 s
  # between its polls): Slurm's fastest way to see one job done.
  c0=$(cpu_ms slurm)
  R[slurm.d_srun]=$(samples srun -Q --gres=gpu:1 -n1 true | tee "$STATE/slurm-d-srun.txt" | median)
  R[slurm.d_cpu]=$(per_job_ms "$c0" "$(cpu_ms slurm)" "$SAMPLES")
  R[slurm.d]=$(faster "${R[slurm.d_sbatch]}" "${R[slurm.d_srun]}")

  log "slurm (e): squeue, sbatch --version, x$SAMPLES"
  R[slurm.e]=$(samples squeue | tee "$STATE/slurm-e.txt" | median)
  R[slurm.e2]=$(samples sbatch --version | tee "$STATE/slurm-e2.txt" | median)

  log "slurm (f): slurmctld RSS with $JOBS jobs queued (nodes drained)"
  R[slurm.f0]=$(rss_kib "$SLURMCTLD_PID")
  scontrol update NodeName=sn[1-4] State=DRAIN Reason=bench
  seq 1 "$JOBS" | xargs -P "$PAR" -I{} bash -c slurm_submit
  sleep 1
  R[slurm.f]=$(rss_kib "$SLURMCTLD_PID")
  R[slurm.f_anon]=$(anon_kib "$SLURMCTLD_PID")
  R[slurm.fq]=$(squeue -h -t PD -o %i | wc -l)
}

# ---------------------------------------------------------------- Joule ----
start_joule() {
  joule_cluster "$STATE/joule" "$BIN" bench || exit 1
  log "joule: jouled pid $JOULED_PID, 4 agents ready"
}
# No job left that has not ended (pending, starting, running): like
# squeue -t PD,CF,R,CG, only the active jobs are listed, not the thousands
# that ended in the rows before.
joule_active() {
  [[ $("$BIN/joulectl" job list --state pending,starting,running | tail -n +2 | wc -l) == 0 ]]
}
joule_submit() { JOULE_TOKEN_FILE=$TENANT_TOKEN "$BIN/joulectl" job submit --gpus 1 -- true >/dev/null; }
# joulectl as the tenant: directly (TLS, token file) or through the session
jctl() { JOULE_TOKEN_FILE=$TENANT_TOKEN "$BIN/joulectl" "$@"; }
jctl_s() { JOULE_SESSION=$SESSION "$BIN/joulectl" "$@"; }
joule_done() { "$1" job show "$2" | head -1 | grep -q succeeded; }
# One job through CTL (jctl or jctl_s), submitted and polled until it has
# succeeded.
joule_one() {
  local id
  id=$("$1" job submit --gpus 1 -- true)
  wait_until 60 joule_done "$1" "$id"
}
# Rows (d) and (e) through CTL, the results under KEY (joule: direct,
# joule_s: through the session): joule_d_e KEY CTL
joule_d_e() {
  local key=$1 ctl=$2 c0
  log "$key (d): one job, submit -> done, x$SAMPLES"
  R[$key.d_poll]=$(samples joule_one "$ctl" | tee "$STATE/$key-d.txt" | median)
  R[$key.d]=${R[$key.d_poll]}
  if "$BIN/joulectl" job submit --help 2>/dev/null | grep -q -- --wait; then
    c0=$(cpu_ms joule)
    R[$key.d_wait]=$(samples "$ctl" job submit --gpus 1 --wait -- true | tee "$STATE/$key-d-wait.txt" | median)
    R[$key.d_cpu]=$(per_job_ms "$c0" "$(cpu_ms joule)" "$SAMPLES")
    R[$key.d]=$(faster "${R[$key.d_poll]}" "${R[$key.d_wait]}")
  fi
  # squeue lists the active jobs (none now); the same for Joule is the
  # running ones (the list of all 3,000+ finished jobs is another question).
  log "$key (e): joulectl job list --state running, x$SAMPLES"
  R[$key.e]=$(samples "$ctl" job list --state running | tee "$STATE/$key-e.txt" | median)
}
bench_joule() {
  local t0 c0
  export BIN TENANT_TOKEN  # for joule_submit under xargs
  bench_rows joule joule_submit joule_active

  log "joule (c): one array of $JOBS"
  if "$BIN/joulectl" job submit --help 2>/dev/null | grep -q -- --array; then
    c0=$(cpu_ms joule); t0=$(now_ms)
    JOULE_TOKEN_FILE=$TENANT_TOKEN "$BIN/joulectl" job submit --array "0-$((JOBS - 1))" --gpus 1 -- true >/dev/null
    POLL=0.05 wait_until 600 joule_active
    row_result joule c "$c0" "$t0"
  else
    R[joule.c]=n/a
  fi

  joule_d_e joule jctl
  log "joule (e''): joulectl tenant list, --help, x$SAMPLES"
  R[joule.e_tenant]=$(samples "$BIN/joulectl" tenant list | tee "$STATE/joule-e-tenant.txt" | median)
  R[joule.e2]=$(samples "$BIN/joulectl" --help | tee "$STATE/joule-e2.txt" | median)

  if [[ ${JOULE_SESSION_ROWS:-1} == 1 ]]; then bench_joule_session; fi

  log "joule (f): jouled RSS with $JOBS jobs queued (nodes drained)"
  R[joule.f0]=$(rss_kib "$JOULED_PID")
  for n in 1 2 3 4; do "$BIN/joulectl" node drain "bench-$n" >/dev/null; done
  seq 1 "$JOBS" | xargs -P "$PAR" -I{} bash -c joule_submit
  sleep 1
  R[joule.f]=$(rss_kib "$JOULED_PID")
  R[joule.f_anon]=$(anon_kib "$JOULED_PID")
  R[joule.fq]=$("$BIN/joulectl" job list --state pending | tail -n +2 | wc -l)
}

# ---------------------------------------------------------------- run ------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Rows (a), (b), (d) and (e) again with joulectl going through a resident
# session (`joulectl session start`, JOULE_SESSION): one process of the
# Joule side that holds the TLS channel and the tenant's token, as munged
# holds Slurm's credential. It runs in the Joule cgroup, so the CPU rows
# count it. JOULE_SESSION_ROWS=0 leaves these rows out.
joule_s_active() {
  [[ $(JOULE_SESSION=$SESSION "$BIN/joulectl" job list --state pending,starting,running | tail -n +2 | wc -l) == 0 ]]
}
joule_s_submit() { JOULE_SESSION=$SESSION "$BIN/joulectl" job submit --gpus 1 -- true >/dev/null; }
bench_joule_session() {
  mkdir -m 700 "$STATE/joule/session"
  SESSION=$STATE/joule/session/s.sock
  JOULE_TOKEN_FILE=$TENANT_TOKEN "$BIN/joulectl" session start --socket "$SESSION" --foreground \
    >"$STATE/joule/session.log" 2>&1 &
  PIDS+=($!)
  wait_until 20 "$BIN/joulectl" session status --socket "$SESSION" >/dev/null 2>&1 ||
    { cat "$STATE/joule/session.log" >&2; exit 1; }
  export SESSION
  bench_rows joule joule_s_submit joule_s_active joule_s

  joule_d_e joule_s jctl_s
  "$BIN/joulectl" session stop --socket "$SESSION" >/dev/null
}

if [[ $ONLY != joule ]]; then enter_cg slurm; start_slurm; bench_slurm; fi
if [[ $ONLY != slurm ]]; then
  enter_cg joule; start_joule; bench_joule
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

v() { echo "${R[$1]:-n/a}"; }
# ratio KIND A B: "higher" -> B/A (Joule / Slurm), "lower" -> A/B
ratio() {
  awk -v k="$1" -v s="$2" -v j="$3" 'BEGIN {
    if (s == "n/a" || j == "n/a" || s + 0 == 0 || j + 0 == 0) { print "n/a"; exit }
    if (k == "higher") printf "%.2fx\n", j / s; else printf "%.2fx\n", s / j }'
}
mib() { [[ $1 == n/a ]] && echo n/a || awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
TABLE=$OUT_DIR/vs-slurm.txt
{
  echo "# Joule vs Slurm, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before $LOAD_BEFORE, after $LOAD_AFTER"
  echo "# Slurm $(sbatch --version 2>/dev/null | awk '{print $2}'), JOBS=$JOBS PAR=$PAR SAMPLES=$SAMPLES; Joule: TLS + tokens"
  echo "# advantage = Joule / Slurm for rates, Slurm / Joule for times and memory (> 1: Joule better)"
  printf '| %-66s | %19s | %19s | %9s | %s |\n' workload Slurm Joule advantage target
  printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..68})" "$(printf -- '-%.0s' {1..21})" "$(printf -- '-%.0s' {1..21})" "$(printf -- '-%.0s' {1..11})" "--------"
  row() { printf '| %-66s | %19s | %19s | %9s | %s |\n' "$@"; }
  row "(a) $JOBS jobs, sequential CLI submits -> all done (jobs/s)" "$(v slurm.a)" "$(v joule.a)" "$(ratio higher "$(v slurm.a)" "$(v joule.a)")" ">= 5x"
  row "(b) $JOBS jobs, $PAR parallel CLI submitters (jobs/s)" "$(v slurm.b)" "$(v joule.b)" "$(ratio higher "$(v slurm.b)" "$(v joule.b)")" ">= 10x"
  row "(c) one array of $JOBS tasks -> all done (tasks/s)" "$(v slurm.c)" "$(v joule.c)" "$(ratio higher "$(v slurm.c)" "$(v joule.c)")" ">= 20x"
  row "(d) one job, submit -> done seen by the shell (ms, median)" "$(v slurm.d)" "$(v joule.d)" "$(ratio lower "$(v slurm.d)" "$(v joule.d)")" ">= 100x"
  row "(d') Slurm sbatch + scontrol polls / srun; Joule polls / --wait" "$(v slurm.d_sbatch) / $(v slurm.d_srun)" "$(v joule.d_poll) / $(v joule.d_wait)" "-" "-"
  if [[ -n ${R[joule_s.a]:-} ]]; then
    row "(a s) (a) with joulectl through a session (JOULE_SESSION)" "$(v slurm.a)" "$(v joule_s.a)" "$(ratio higher "$(v slurm.a)" "$(v joule_s.a)")" ">= 5x"
    row "(b s) (b) through a session" "$(v slurm.b)" "$(v joule_s.b)" "$(ratio higher "$(v slurm.b)" "$(v joule_s.b)")" ">= 10x"
    row "(d s) (d) through a session (ms, median)" "$(v slurm.d)" "$(v joule_s.d)" "$(ratio lower "$(v slurm.d)" "$(v joule_s.d)")" ">= 100x"
    row "(d' s) polls / --wait through a session" "$(v slurm.d_sbatch) / $(v slurm.d_srun)" "$(v joule_s.d_poll) / $(v joule_s.d_wait)" "-" "-"
  fi
  row "(a') CPU per job, every process of the side (ms; lower is better)" "$(v slurm.a_cpu)" "$(v joule.a_cpu)" "$(ratio lower "$(v slurm.a_cpu)" "$(v joule.a_cpu)")" "-"
  row "(b') CPU per job, $PAR parallel submitters (ms)" "$(v slurm.b_cpu)" "$(v joule.b_cpu)" "$(ratio lower "$(v slurm.b_cpu)" "$(v joule.b_cpu)")" "-"
  if [[ -n ${R[joule_s.a]:-} ]]; then
    row "(a' s) CPU per job, sequential, through a session (ms)" "$(v slurm.a_cpu)" "$(v joule_s.a_cpu)" "$(ratio lower "$(v slurm.a_cpu)" "$(v joule_s.a_cpu)")" "-"
    row "(b' s) CPU per job, $PAR parallel, through a session (ms)" "$(v slurm.b_cpu)" "$(v joule_s.b_cpu)" "$(ratio lower "$(v slurm.b_cpu)" "$(v joule_s.b_cpu)")" "-"
  fi
  row "(c') CPU per array task (ms)" "$(v slurm.c_cpu)" "$(v joule.c_cpu)" "$(ratio lower "$(v slurm.c_cpu)" "$(v joule.c_cpu)")" "-"
  row "(d'') CPU per single job: srun / job submit --wait (ms)" "$(v slurm.d_cpu)" "$(v joule.d_cpu)" "$(ratio lower "$(v slurm.d_cpu)" "$(v joule.d_cpu)")" "-"
  if [[ -n ${R[joule_s.a]:-} ]]; then
    row "(d'' s) the same through a session (ms)" "$(v slurm.d_cpu)" "$(v joule_s.d_cpu)" "$(ratio lower "$(v slurm.d_cpu)" "$(v joule_s.d_cpu)")" "-"
  fi
  row "(e) one CLI call: squeue / joulectl job list --state running (ms)" "$(v slurm.e)" "$(v joule.e)" "$(ratio lower "$(v slurm.e)" "$(v joule.e)")" ">= 1x"
  if [[ -n ${R[joule_s.e]:-} ]]; then
    row "(e s) (e) through a session (ms)" "$(v slurm.e)" "$(v joule_s.e)" "$(ratio lower "$(v slurm.e)" "$(v joule_s.e)")" ">= 1x"
  fi
  row "(e'') squeue / joulectl tenant list (ms, median)" "$(v slurm.e)" "$(v joule.e_tenant)" "$(ratio lower "$(v slurm.e)" "$(v joule.e_tenant)")" "-"
  row "(e') CLI start-up: sbatch --version / joulectl --help (ms)" "$(v slurm.e2)" "$(v joule.e2)" "$(ratio lower "$(v slurm.e2)" "$(v joule.e2)")" "-"
  row "(f) control-plane RSS, $JOBS jobs queued (MiB)" "$(mib "$(v slurm.f)")" "$(mib "$(v joule.f)")" "$(ratio lower "$(v slurm.f)" "$(v joule.f)")" ">= 0.5x"
  row "(f') the same, RssAnon only (heap, stacks) (MiB)" "$(mib "$(v slurm.f_anon)")" "$(mib "$(v joule.f_anon)")" "$(ratio lower "$(v slurm.f_anon)" "$(v joule.f_anon)")" "-"
  row "(f0) control-plane RSS before (idle, after a-e) (MiB)" "$(mib "$(v slurm.f0)")" "$(mib "$(v joule.f0)")" "$(ratio lower "$(v slurm.f0)" "$(v joule.f0)")" "-"
  echo "# (f) queued jobs counted: Slurm $(v slurm.fq), Joule $(v joule.fq)"
  echo "# CPU rows (a'-d''): CPU time of the side's cgroup ($CG_KIND${CG_BASE:+ cpuacct}) over the row, divided by the jobs: daemons, CLI processes, polls, job launch and the jobs"
} | tee "$TABLE"
log "table written to $TABLE"
