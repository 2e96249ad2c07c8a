#!/usr/bin/env bash
# Runs every Joule benchmark from one command (see bench/README.md):
#
#   bench/run.sh            # default sizes, a few minutes on 2 cores
#   bench/run.sh --heavy    # + the 10M-event statement and the 1M-job
#                           #   joule-sim replays (several more minutes)
#
# Builds into build-bench/ (override with BUILD_DIR=...) with -j2.
# Results go to stdout and to $OUT_DIR (default bench-results/).
set -euo pipefail
cd "$(dirname "$0")/.."
HEAVY=0
[[ "${1:-}" == "--heavy" ]] && HEAVY=1
BUILD_DIR=${BUILD_DIR:-build-bench}
OUT_DIR=${OUT_DIR:-bench-results}
REPS=${REPS:-5}
mkdir -p "$OUT_DIR"

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DJOULE_TEST_DIRS=sim >/dev/null
cmake --build "$BUILD_DIR" --target bench_policy bench_ledger joule-sim -j2
BIN=$BUILD_DIR/bin

echo "== placement decisions/s (scheduler::Schedule, 10k nodes / 80k GPUs)"
"$BIN/bench_policy" --benchmark_repetitions="$REPS" \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT_DIR/bench_policy.json" --benchmark_out_format=json

echo "== RecordUsage into RocksDB, statement after 1M events"
"$BIN/bench_ledger" --benchmark_repetitions="$REPS" \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT_DIR/bench_ledger.json" --benchmark_out_format=json

SIM_CLUSTER="--synthetic-cluster nodes=10000,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,racks-per-row=16,rows-per-hall=10 --cap-fraction rack=0.8,row=0.75,site=0.7"
replay() {  # jobs, extra flags...
  local jobs=$1; shift
  echo "== joule-sim replay: $jobs jobs on 10,000 nodes $*"
  /usr/bin/time -f "joule-sim wall %e s, peak RSS %M KiB" \
    "$BIN/joule-sim" $SIM_CLUSTER --synthetic-jobs "$jobs" --utilization 0.45 \
    --policy allocated --no-progress "$@" | grep -E "jobs:|simulator:|peak RSS"
}
replay 100000 --schedule-interval 60s

if [[ $HEAVY == 1 ]]; then
  echo "== statement for a tenant with 10,000,000 events"
  JOULE_BENCH_EVENTS=10000000 "$BIN/bench_ledger" \
    --benchmark_filter=Statement --benchmark_repetitions="$REPS" \
    --benchmark_report_aggregates_only=true
  replay 1000000 --schedule-interval 60s
  replay 1000000
fi
