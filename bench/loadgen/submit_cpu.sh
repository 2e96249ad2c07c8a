#!/usr/bin/env bash
# Submissions into a fresh jouled with CPU per submit, then jouled's idle
# CPU with every submitted job left pending (the loadgen's node has no
# agent, so nothing can be placed).
#
#   bench/loadgen/submit_cpu.sh [CLIENTS] [JOBS] [IDLE_SECONDS]
#
# Defaults 64 clients, 20,000 jobs, 20 s idle. TLS with a development PKI,
# RocksDB in a temp dir, the binaries of build/bin (BUILD_DIR=).
# PERF=submit (or PERF=idle) also records `perf record -g` of jouled during
# the submissions (the idle phase) into perf-submit.data (perf-idle.data)
# in the temp dir (the path is printed; KEEP=1 keeps it).
# LOADGEN_FLAGS=--client-threads runs the loadgen's older mode (one
# blocking thread per client) instead of its callback mode.
# THREADS=1 also prints jouled's busiest threads (THREADS_TOP=, 6).
# After the submissions it prints the number of scheduling rounds they
# took and their mean duration (from jouled's metrics).
# Prints one line per phase with `uptime`'s load average, since on a
# shared machine every wall figure depends on it; CPU is utime + stime of
# the process from /proc/PID/stat.
set -euo pipefail
CLIENTS=${1:-64}
JOBS=${2:-20000}
IDLE=${3:-20}
BIN=${BUILD_DIR:-build}/bin
TMP=$(mktemp -d)
JOULED_PID=""
cleanup() {
  if [[ -n "$JOULED_PID" ]]; then
    kill "$JOULED_PID" 2>/dev/null || true
    wait "$JOULED_PID" 2>/dev/null || true
  fi
  [[ "${KEEP:-0}" == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_ms() {  # utime + stime of PID in ms
  local f
  read -ra f <"/proc/$1/stat"
  echo $(((f[13] + f[14]) * 1000 / $(getconf CLK_TCK)))
}

bash scripts/dev-pki.sh "$TMP/pki" >/dev/null 2>&1
cat >"$TMP/bench.conf" <<'CONF'
domain { name: "site" kind: "site" cap: "1000MW" }
scheduler { default_domain: "site" max_nodes: 100000 max_registrations_per_second: 1000000 }
billing { allow_unpriced: true }
CONF
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/jouled" --listen "127.0.0.1:$PORT" --data-dir "$TMP/db" \
  --heartbeat-timeout 60s --metrics-listen 127.0.0.1:0 --config "$TMP/bench.conf" \
  --tls-cert "$TMP/pki/server.crt" --tls-key "$TMP/pki/server.key" --tls-ca "$TMP/pki/ca.crt" \
  >"$TMP/jouled.log" 2>&1 &
JOULED_PID=$!
CLIENT=(--server "127.0.0.1:$PORT" --ca "$TMP/pki/ca.crt" --token-file "$TMP/db/operator.token")
for _ in $(seq 1 100); do
  [[ -s "$TMP/db/operator.token" ]] && "$BIN/joulectl" "${CLIENT[@]}" tenant list >/dev/null 2>&1 && break
  sleep 0.1
done

PERF_PID=""
if [[ "${PERF:-0}" == submit ]]; then
  perf record ${PERF_ARGS:--g} -o "$TMP/perf-submit.data" -p "$JOULED_PID" >/dev/null 2>&1 &
  PERF_PID=$!
fi
echo "load before submit: $(load)"
before=$(cpu_ms "$JOULED_PID")
/usr/bin/time -f "loadgen_cpu_s=%U+%S wall_s=%e" "$BIN/joule-loadgen" "${CLIENT[@]}" \
  submit --clients "$CLIENTS" --jobs "$JOBS" ${LOADGEN_FLAGS:-}
after=$(cpu_ms "$JOULED_PID")
if [[ -n "$PERF_PID" ]]; then
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  echo "perf data: $TMP/perf-submit.data (KEEP=1 to keep it)"
fi
echo "jouled_cpu_ms=$((after - before)) per_submit_us=$(((after - before) * 1000 / JOBS)) load=$(load)"
# THREADS=1: jouled's busiest threads since its start (tid order is start
# order: the scheduling loop is among the first).
if [[ "${THREADS:-0}" == 1 ]]; then
  for t in /proc/"$JOULED_PID"/task/*; do
    echo "$(($(basename "$t") - JOULED_PID)) $(cpu_ms "$JOULED_PID/task/$(basename "$t")")"
  done | sort -k2 -nr | head -${THREADS_TOP:-6} | awk '{printf "thread tid-pid=%s cpu_ms=%s\n", $1, $2}'
fi

# The scheduling rounds during the submissions: how many, their mean and
# longest duration (jouled's joule_loop_round_seconds histogram).
METRICS=$(sed -n 's|^jouled: metrics on \(http://[^ ]*\).*|\1|p' "$TMP/jouled.log" | head -1)
if [[ -n "$METRICS" ]]; then
  curl -s "$METRICS" | awk '
    /^joule_loop_round_seconds_count\{round="schedule"\}/ { n = $2 }
    /^joule_loop_round_seconds_sum\{round="schedule"\}/ { s = $2 }
    END { if (n > 0) printf "schedule_rounds=%d mean_round_ms=%.2f\n", n, s * 1000 / n }'
fi

# Idle: let the last submits' rounds finish, then measure.
sleep 2
if [[ "${PERF:-0}" == idle ]]; then
  perf record -g -o "$TMP/perf-idle.data" -p "$JOULED_PID" >/dev/null 2>&1 &
  PERF_PID=$!
fi
before=$(cpu_ms "$JOULED_PID")
sleep "$IDLE"
after=$(cpu_ms "$JOULED_PID")
if [[ -n "$PERF_PID" && "${PERF:-0}" == idle ]]; then
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  echo "perf data: $TMP/perf-idle.data (KEEP=1 to keep it)"
fi
echo "idle pending=$JOBS seconds=$IDLE jouled_cpu_ms=$((after - before)) core_fraction=$(awk -v c=$((after - before)) -v s="$IDLE" 'BEGIN{printf "%.3f", c / 1000 / s}') load=$(load)"

# LIST=1: then every job listed (`joulectl job list`, all pages, table and
# -o json) and one `job list --state running` (the active set), each with
# its wall time, the client's CPU and jouled's CPU over the call.
if [[ "${LIST:-0}" == 1 ]]; then
  for args in "job list" "-o json job list" "job list --state running"; do
    before=$(cpu_ms "$JOULED_PID")
    # shellcheck disable=SC2086
    /usr/bin/time -f "client_cpu_s=%U+%S wall_s=%e" "$BIN/joulectl" "${CLIENT[@]}" $args \
      >"$TMP/list.out" 2>"$TMP/list.time"
    after=$(cpu_ms "$JOULED_PID")
    echo "list '$args' rows=$(wc -l <"$TMP/list.out") $(tail -1 "$TMP/list.time") jouled_cpu_ms=$((after - before)) load=$(load)"
  done
fi
