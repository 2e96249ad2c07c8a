#!/usr/bin/env bash
# End-to-end job throughput as a user sees it: 1,000 trivial 1-GPU jobs
# (`true`), each submitted by its own `joulectl job submit` process, on 4
# simulated agents x 8 GPUs; first submit -> last job done. Then the submit
# -> done latency of single jobs, from the daemon's own timestamps.
# Usage: bench/loadgen/e2e_jobs.sh [JOBS] [PARALLEL_SUBMITTERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${BIN:-build/bin}"
JOBS="${1:-1000}"
PAR="${2:-8}"
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
# TLS and tokens, as a user runs it: the operator sets up, the tenant's own
# token submits.
source bench/loadgen/joule_cluster.sh
joule_cluster "$DIR" "$BIN" bench

start=$(date +%s.%N)
seq 1 "$JOBS" | JOULE_TOKEN_FILE="$TENANT_TOKEN" xargs -P "$PAR" -I{} "$BIN/joulectl" job submit --gpus 1 -- true >/dev/null
submitted=$(date +%s.%N)
deadline=$((SECONDS + 300))
while [ "$("$BIN/joulectl" job list --state succeeded | tail -n +2 | wc -l)" -lt "$JOBS" ]; do
  [ $SECONDS -gt $deadline ] && { echo "jobs did not finish" >&2; exit 1; }
  sleep 0.05
done
done_at=$(date +%s.%N)
python3 - "$start" "$submitted" "$done_at" "$JOBS" <<'PY'
import sys
start, submitted, done, jobs = map(float, sys.argv[1:])
print(f"mode=e2e jobs={int(jobs)} submit_seconds={submitted-start:.2f} "
      f"total_seconds={done-start:.2f} rate={jobs/(done-start):.0f}/s")
PY

# Single jobs, one at a time: submit -> succeeded, daemon timestamps.
for i in $(seq 1 20); do
  id=$(JOULE_TOKEN_FILE="$TENANT_TOKEN" "$BIN/joulectl" job submit --gpus 1 -- true)
  until "$BIN/joulectl" job show "$id" | head -1 | grep -q succeeded; do sleep 0.01; done
  "$BIN/joulectl" -o json job show "$id" >"$DIR/one-$i.json"
done
python3 - "$DIR" <<'PY'
import glob, json, sys, datetime as dt, statistics
def t(s): return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
lat = []
for f in glob.glob(sys.argv[1] + "/one-*.json"):
    j = json.load(open(f))
    end = [h for h in j["history"] if h["state"] == "JOB_STATE_SUCCEEDED"][0]["time"]
    lat.append((t(end) - t(j["submit_time"])).total_seconds() * 1000)
lat.sort()
print(f"mode=one-job samples={len(lat)} submit_to_done_ms_p50={statistics.median(lat):.1f} "
      f"max={lat[-1]:.1f}")
PY
