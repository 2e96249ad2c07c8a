#!/usr/bin/env bash
# Runs every Joule benchmark from one command (see bench/README.md):
#
#   bench/run.sh                # everything at default sizes: the Google
#                               #   Benchmark programs, a 100k-job joule-sim
#                               #   replay and the daemon benchmarks against a
#                               #   real jouled (about 5-6 minutes on 2 cores)
#   bench/run.sh --heavy        # + the 10M-event statement and the 1M-job
#                               #   joule-sim replays (several more minutes)
#   bench/run.sh --daemon-only  # only the daemon benchmarks (~2 minutes)
#   bench/run.sh --no-daemon    # everything but the daemon benchmarks
#
# Flags combine (e.g. --no-daemon --heavy).
# Builds into build-bench/ (override with BUILD_DIR=...) with -j2; NO_BUILD=1
# skips the build and uses the binaries already in $BUILD_DIR/bin (e.g.
# NO_BUILD=1 BUILD_DIR=build bench/run.sh --daemon-only).
# Results go to stdout and to $OUT_DIR (default bench-results/).
#
# The daemon benchmarks start a fresh jouled (RocksDB in a temp dir, a free
# port on 127.0.0.1) for each measurement and stop it afterwards. Their
# sizes can be lowered for a quick check: SUBMIT_JOBS (5000 and 20000),
# AGENT_NODES (10000), AGENT_SECONDS (10), FILL_NODES (10000),
# FILL_JOBS (100000), E2E_JOBS (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
HEAVY=0
MICRO=1
DAEMON=1
for arg in "$@"; do
  case "$arg" in
    --heavy) HEAVY=1 ;;
    --daemon-only) MICRO=0; DAEMON=1 ;;
    --no-daemon) DAEMON=0 ;;
    *) echo "usage: bench/run.sh [--heavy] [--daemon-only | --no-daemon]" >&2
       exit 2 ;;
  esac
done
BUILD_DIR=${BUILD_DIR:-build-bench}
OUT_DIR=${OUT_DIR:-bench-results}
REPS=${REPS:-5}
mkdir -p "$OUT_DIR"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
  targets=()
  [[ $MICRO == 1 ]] && targets+=(bench_policy bench_ledger joule-sim)
  [[ $DAEMON == 1 ]] && targets+=(jouled joulectl joule-agent joule-loadgen)
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DJOULE_TEST_DIRS=sim >/dev/null
  cmake --build "$BUILD_DIR" --target "${targets[@]}" -j2
fi
BIN=$BUILD_DIR/bin

if [[ $MICRO == 1 ]]; then
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
fi

[[ $DAEMON == 1 ]] || exit 0

# ---------------------------------------------------------------- daemon ----
# One line per measurement goes to stdout and to $OUT_DIR/daemon.txt.
DAEMON_OUT="$OUT_DIR/daemon.txt"
: >"$DAEMON_OUT"
TMP=$(mktemp -d)
JOULED_PID=""
stop_jouled() {
  if [[ -n "$JOULED_PID" ]]; then
    kill "$JOULED_PID" 2>/dev/null || true
    wait "$JOULED_PID" 2>/dev/null || true
    JOULED_PID=""
  fi
}
trap 'stop_jouled; rm -rf "$TMP"' EXIT

# TLS with a development PKI (as in production), or plaintext for the
# comparison runs: TRANSPORT=tls|insecure.
TRANSPORT=tls
bash scripts/dev-pki.sh "$TMP/pki" >/dev/null 2>&1
# Load, not a defence test: lift the node cap and registration rate, and
# let loadgen's unpriced jobs in.
cat >"$TMP/bench.conf" <<'CONF'
domain { name: "site" kind: "site" cap: "1000MW" }
scheduler { default_domain: "site" max_nodes: 100000 max_registrations_per_second: 1000000 }
billing { allow_unpriced: true }
CONF
transport_flags() {  # $1: server|client
  if [[ $TRANSPORT == insecure ]]; then echo --insecure; return; fi
  if [[ $1 == server ]]; then
    echo --tls-cert "$TMP/pki/server.crt" --tls-key "$TMP/pki/server.key" --tls-ca "$TMP/pki/ca.crt"
  else
    echo --ca "$TMP/pki/ca.crt"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Starts a fresh jouled; sets PORT and JOULED_PID.
start_jouled() {
  PORT=$(free_port)
  local dir="$TMP/jouled-$PORT"
  mkdir -p "$dir"
  TOKEN_FILE="$dir/db/operator.token"
  echo "\$ $BIN/jouled --listen 127.0.0.1:$PORT --data-dir $dir/db --heartbeat-timeout 60s ($TRANSPORT) &"
  # shellcheck disable=SC2046
  "$BIN/jouled" --listen "127.0.0.1:$PORT" --data-dir "$dir/db" \
    --heartbeat-timeout 60s --metrics-listen 127.0.0.1:0 --config "$TMP/bench.conf" \
    $(transport_flags server) \
    >"$dir/jouled.log" 2>&1 &
  JOULED_PID=$!
  for _ in $(seq 1 100); do
    # shellcheck disable=SC2046
    [[ -s "$TOKEN_FILE" ]] && "$BIN/joulectl" --server "127.0.0.1:$PORT" $(transport_flags client) \
      --token-file "$TOKEN_FILE" tenant list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "jouled did not come up:" >&2
  cat "$dir/jouled.log" >&2
  exit 1
}
# Runs joule-loadgen against a fresh jouled: loadgen MODE [flags...]
loadgen() {
  start_jouled
  local args=("$@")
  [[ "$1" == fill ]] && args+=(--pid "$JOULED_PID")
  echo "\$ joule-loadgen --server 127.0.0.1:$PORT $(transport_flags client) --token-file TOKEN ${args[*]}"
  # shellcheck disable=SC2046
  "$BIN/joule-loadgen" --server "127.0.0.1:$PORT" $(transport_flags client) \
    --token-file "$TOKEN_FILE" "${args[@]}" | sed "s/^/transport=$TRANSPORT /" | tee -a "$DAEMON_OUT"
  stop_jouled
}

echo "== job submissions over gRPC into jouled (RocksDB, synced), many clients"
loadgen submit --clients 32 --jobs "${SUBMIT_JOBS:-5000}"
loadgen submit --clients 64 --jobs "${SUBMIT_JOBS:-20000}"

echo "== agent reports ingested over gRPC streams (8 GPUs per node)"
loadgen agents --nodes "${AGENT_NODES:-10000}" --seconds "${AGENT_SECONDS:-10}" \
  --threads 4 --channels 50

echo "== TLS cost: the same submission and report runs in plaintext (jouled --insecure)"
TRANSPORT=insecure
loadgen submit --clients 32 --jobs "${SUBMIT_JOBS:-5000}"
loadgen agents --nodes "${AGENT_NODES:-10000}" --seconds "${AGENT_SECONDS:-10}" \
  --threads 4 --channels 50
TRANSPORT=tls

echo "== jouled resident memory with many nodes and jobs"
loadgen fill --nodes "${FILL_NODES:-10000}" --jobs "${FILL_JOBS:-100000}"

echo "== end to end: joulectl job submit processes -> jobs done (4 agents x 8 GPUs)"
# e2e_jobs.sh runs build/bin/ relative to the tree it sits in and starts its
# own jouled and agents. For another build dir, run it through a scratch tree
# whose build/bin is $BIN.
E2E=bench/loadgen/e2e_jobs.sh
if [[ "$(cd "$BIN" && pwd -P)" != "$(cd build/bin 2>/dev/null && pwd -P)" ]]; then
  mkdir -p "$TMP/tree/bench/loadgen" "$TMP/tree/build"
  ln -s "$PWD/$E2E" "$TMP/tree/$E2E"
  ln -s "$(cd "$BIN" && pwd -P)" "$TMP/tree/build/bin"
  E2E="$TMP/tree/$E2E"
fi
echo "\$ bench/loadgen/e2e_jobs.sh ${E2E_JOBS:-1000} 8"
"$E2E" "${E2E_JOBS:-1000}" 8 | tee -a "$DAEMON_OUT"

echo "== daemon results ($DAEMON_OUT)"
cat "$DAEMON_OUT"
