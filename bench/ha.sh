#!/usr/bin/env bash
# RocksDB vs etcd in one run (docs/ha.md#benchmarks):
#   - job submissions/s and p99 (joule-loadgen submit, 32 clients)
#   - usage events/s at 1,000 events per RecordUsage call (joulectl usage
#     import --batch 1000)
#   - failover time: SIGKILL the leader -> first successful job submit on
#     the standby, median of FAILOVERS (10) failovers
# etcd: 3 members on this machine (loopback), started and stopped here.
#
#   bench/ha.sh                       # builds into build/ first
#   NO_BUILD=1 BUILD_DIR=build bench/ha.sh
#   SUBMIT_JOBS=5000 USAGE_EVENTS=50000 FAILOVERS=10 bench/ha.sh
#   ETCD_FLAGS="--snapshot-count 10000" SKIP_ROCKSDB=1 FAILOVERS=0 bench/ha.sh
#   PERF=1 ...: perf record of the etcd leader jouled during the usage import
# ETCD_FLAGS: extra flags for every etcd member (docs/ha.md#etcd-server-flags);
# SKIP_ROCKSDB=1: etcd only; FAILOVERS=0: no failovers.
# One line per measurement on stdout and in $OUT_DIR/ha.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
OUT_DIR=${OUT_DIR:-bench-results}
SUBMIT_JOBS=${SUBMIT_JOBS:-5000}
USAGE_EVENTS=${USAGE_EVENTS:-50000}
FAILOVERS=${FAILOVERS:-10}
KEEP_LOGS=${KEEP_LOGS:-}
ETCD_FLAGS=${ETCD_FLAGS:-}
SKIP_ROCKSDB=${SKIP_ROCKSDB:-0}
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/ha.txt"
: >"$OUT"
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" --target jouled joulectl joule-loadgen -j2
fi
BIN=$BUILD_DIR/bin
command -v etcd >/dev/null || { echo "bench/ha.sh: etcd not installed (apt-get install etcd-server)" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "$KEEP_LOGS" ]]; then cp "$TMP"/jouled-*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_up() {  # server...
  for _ in $(seq 1 200); do
    "$BIN/joulectl" --server "$1" --timeout 2s tenant list >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "jouled at $1 did not come up" >&2; exit 1
}
report() { echo "$*" | tee -a "$OUT"; }

# --- etcd: 3 members ---------------------------------------------------
ETCD_LIMITS=(--max-txn-ops 10240 --max-request-bytes 10485760)
CLUSTER=""; CLIENTS=(); ETCD_PIDS=()
declare -a CPORT PPORT
for i in 0 1 2; do
  CPORT[$i]=$(free_port); PPORT[$i]=$(free_port)
  CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:${PPORT[$i]}"
  CLIENTS+=("http://127.0.0.1:${CPORT[$i]}")
done
for i in 0 1 2; do
  etcd --name "e$i" --data-dir "$TMP/etcd$i" \
    --listen-client-urls "${CLIENTS[$i]}" --advertise-client-urls "${CLIENTS[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    "${ETCD_LIMITS[@]}" $ETCD_FLAGS --logger zap --log-level warn >"$TMP/etcd$i.log" 2>&1 &
  PIDS+=($!); ETCD_PIDS+=($!)
done
ENDPOINTS=$(IFS=,; echo "${CLIENTS[*]}")
sleep 2

start_rocksdb() {  # sets SERVER, JPID
  local port; port=$(free_port)
  SERVER="127.0.0.1:$port"
  "$BIN/jouled" --listen "$SERVER" --data-dir "$TMP/rocks-$port" \
    --insecure --metrics-listen "" \
    --heartbeat-timeout 60s >"$TMP/jouled-$port.log" 2>&1 &
  export JOULE_TOKEN_FILE="$TMP/rocks-$port/operator.token"
  JPID=$!; PIDS+=($JPID); wait_up "$SERVER"
}
declare -A TOKENS
# Plaintext on loopback (a storage comparison; TLS costs are in bench/run.sh).
export JOULE_INSECURE=1
start_etcd_jouled() {  # port prefix -> sets JPID
  "$BIN/jouled" --store etcd --etcd-endpoints "$ENDPOINTS" --etcd-prefix "$2" \
    --etcd-max-txn-ops 10240 --etcd-max-request-bytes 10485760 \
    --listen "127.0.0.1:$1" --advertise "127.0.0.1:$1" \
    --data-dir "$TMP/etcd-jouled-$2" --insecure --metrics-listen "" \
    --heartbeat-timeout 60s >>"$TMP/jouled-$1.log" 2>&1 &
  # The first leader of a prefix writes its bootstrap token there.
  [ -z "${TOKENS[$2]:-}" ] && TOKENS[$2]="$TMP/etcd-jouled-$2/operator.token"
  export JOULE_TOKEN_FILE="${TOKENS[$2]}"
  JPID=$!; PIDS+=($JPID)
}
usage_csv() {
  local t; t=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
  python3 - "$1" "$USAGE_EVENTS" "$t" <<'EOF'
import sys
path, n, t = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write("timestamp,tenant,model,requests,input_tokens,output_tokens,idempotency_key\n")
    for i in range(n):
        f.write(f"{t},acme,llama,1,1000,2000,ev-{i}\n")
EOF
}
# CPU seconds (user + system) a process used so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
measure() {  # mode server jouled-pid [etcd pids...]
  local mode=$1 server=$2 jpid=$3; shift 3
  local others=("$@")
  local sub; sub=$("$BIN/joule-loadgen" --server "$server" --insecure --token-file "$JOULE_TOKEN_FILE" submit --clients 32 --jobs "$SUBMIT_JOBS")
  report "store=$mode $sub"
  "$BIN/joulectl" --server "$server" tenant create acme >/dev/null
  "$BIN/joulectl" --server "$server" price set inference --model llama \
    --input 0.60 --output 0.80 --from "$(date -u +%Y-%m-01)" >/dev/null
  usage_csv "$TMP/usage.csv"
  local t0 t1 out
  local perf=""
  if [[ -n "${PERF_PID:-}" ]]; then  # PERF=1: profile jouled during the import
    perf record -F 999 -g -p "$PERF_PID" -o "$OUT_DIR/perf-usage-$mode.data" >/dev/null 2>&1 &
    perf=$!; sleep 0.5
  fi
  local c0 e0=0 e1=0 p
  c0=$(cpu_s "$jpid")
  for p in "${others[@]}"; do e0=$(python3 -c "print($e0 + $(cpu_s "$p"))"); done
  t0=$(date +%s.%N)
  # joulectl's CPU: the subshell's children's time once it has exited.
  out=$("$BIN/joulectl" --server "$server" usage import "$TMP/usage.csv" --batch 1000
        awk -v t="$(getconf CLK_TCK)" '{print ($16 + $17) / t}' "/proc/$BASHPID/stat" >"$TMP/ctl.cpu")
  t1=$(date +%s.%N)
  local c1; c1=$(cpu_s "$jpid")
  for p in "${others[@]}"; do e1=$(python3 -c "print($e1 + $(cpu_s "$p"))"); done
  if [[ -n "$perf" ]]; then kill -INT "$perf"; wait "$perf" || true; fi
  report "store=$mode mode=usage events=$USAGE_EVENTS batch=1000 result=\"$out\" seconds=$(python3 -c "print(f'{$t1-$t0:.2f}')") rate=$(python3 -c "print(f'{$USAGE_EVENTS/($t1-$t0):.0f}')")/s jouled_cpu_us_per_event=$(python3 -c "print(f'{($c1-$c0)*1e6/$USAGE_EVENTS:.1f}')") etcd_cpu_us_per_event=$(python3 -c "print(f'{($e1-$e0)*1e6/$USAGE_EVENTS:.1f}')") joulectl_cpu_us_per_event=$(python3 -c "print(f'{$(cat "$TMP/ctl.cpu")*1e6/$USAGE_EVENTS:.1f}')")"
}

report "load_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\" etcd_flags=\"$ETCD_FLAGS\""
if [[ "$SKIP_ROCKSDB" != 1 ]]; then
  echo "== RocksDB (one jouled)"
  start_rocksdb
  measure rocksdb "$SERVER" "$JPID"
  kill "$JPID"; wait "$JPID" 2>/dev/null || true
fi

echo "== etcd (3 members on this machine, one leader + one standby)"
P0=$(free_port); P1=$(free_port)
start_etcd_jouled "$P0" /bench; J0=$JPID
wait_up "127.0.0.1:$P0"
start_etcd_jouled "$P1" /bench; J1=$JPID
[[ "${PERF:-0}" == 1 ]] && PERF_PID=$J0
measure etcd "127.0.0.1:$P0" "$J0" "${ETCD_PIDS[@]}"  # the leader
PERF_PID=""

echo "== failover: SIGKILL the leader -> first successful submit ($FAILOVERS times)"
SERVERS="127.0.0.1:$P0,127.0.0.1:$P1"
declare -A PID_OF=([$P0]=$J0 [$P1]=$J1)
TIMES=()
for n in $(seq 1 "$FAILOVERS"); do
  leader=$(ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" get /bench/leader --print-value-only)
  lport=${leader##*:}
  sleep 1  # the standby is campaigning
  t0=$(date +%s.%N)
  kill -9 "${PID_OF[$lport]}"
  until "$BIN/joulectl" --server "$SERVERS" --timeout 1s job submit --tenant acme \
      --gpus 1 -- true >/dev/null 2>&1; do :; done
  t1=$(date +%s.%N)
  dt=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  TIMES+=("$dt")
  echo "failover $n: ${dt}s"
  wait "${PID_OF[$lport]}" 2>/dev/null || true
  start_etcd_jouled "$lport" /bench; PID_OF[$lport]=$JPID
done
[[ "$FAILOVERS" -gt 0 ]] || { report "load_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""; exit 0; }
median=$(printf '%s\n' "${TIMES[@]}" | sort -n | python3 -c "import sys; v=[float(x) for x in sys.stdin]; print(f'{sorted(v)[len(v)//2] if len(v)%2 else (sorted(v)[len(v)//2-1]+sorted(v)[len(v)//2])/2:.2f}')")
report "store=etcd mode=failover n=$FAILOVERS lease_ttl=3s median_s=$median all_s=${TIMES[*]}"
report "load_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
