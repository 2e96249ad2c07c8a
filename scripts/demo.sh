#!/usr/bin/env bash
# Quickstart command 1: installs what is missing, builds, and runs the demo:
# jouled on an embedded RocksDB (./demo-data), four simulated agents with 8
# GPUs each, a tenant with a reserved contract, jobs under power caps, a cap
# cut, inference usage from the Azure LLM trace, a statement and the backlog.
# Everything runs over TLS (a development PKI from scripts/dev-pki.sh) with
# bearer tokens: the operator sets up, tenants submit their own jobs, a
# metering token imports usage, a finance token reads statements.
# The dashboard (http://127.0.0.1:9464/) and the Prometheus metrics
# (/metrics there; the agents' on ports 9465-9468) are live while it runs;
# JOULE_DEMO_HOLD=SECONDS keeps everything running that long at the end.
# Stops everything it started when it ends (or on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BIN=build/bin
PORT="${JOULE_DEMO_PORT:-7070}"
export JOULE_SERVER="127.0.0.1:$PORT"
DATA=demo-data
rm -rf "$DATA" && mkdir -p "$DATA"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
PKI="$DATA/pki"
export JOULE_CA="$PKI/ca.crt"
# ctl runs joulectl as the operator; as TOKEN_VAR runs it with another token.
ctl() { echo "\$ joulectl $*"; "$BIN/joulectl" --token-file "$DATA/db/operator.token" "$@"; }
as() {
  local who=$1; shift
  echo "\$ JOULE_TOKEN=<$who> joulectl $*"
  JOULE_TOKEN="${TOKENS[$who]}" "$BIN/joulectl" "$@"
}
declare -A TOKENS
step() { printf '\n=== %s\n' "$*"; }

step "a development PKI: a cluster CA, jouled's certificate, one per node"
bash scripts/dev-pki.sh "$PKI" gpu-01 gpu-02 gpu-03 gpu-04

step "starting jouled on 127.0.0.1:$PORT over TLS (data in $DATA/db)"
"$BIN/jouled" --listen "127.0.0.1:$PORT" --data-dir "$DATA/db" \
  --tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" --tls-ca "$PKI/ca.crt" \
  --metrics-listen "127.0.0.1:${JOULE_DEMO_METRICS_PORT:-9464}" \
  --config examples/demo-cluster.conf --report-interval 500ms \
  --heartbeat-timeout 3s >"$DATA/jouled.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do
  [ -s "$DATA/db/operator.token" ] &&
    "$BIN/joulectl" --token-file "$DATA/db/operator.token" tenant list >/dev/null 2>&1 && break
  sleep 0.1
done
grep -E "operator token|metrics on|dashboard on" "$DATA/jouled.log" | sed "s|$PWD/||"
METRICS="127.0.0.1:${JOULE_DEMO_METRICS_PORT:-9464}"
echo "live dashboard: http://$METRICS/  (Prometheus metrics: http://$METRICS/metrics)"
ctl whoami

step "starting 4 simulated agents (8 x H100 each)"
# Jobs never run as root: as root the agents run them as nobody.
JOB_USER=()
[ "$(id -u)" = 0 ] && JOB_USER=(--job-user nobody)
for n in 01 02 03 04; do
  "$BIN/joule-agent" --server "$JOULE_SERVER" --node-name "gpu-$n" --sim-gpus 8 --sim-gpu-model H100 \
    --ca "$PKI/ca.crt" --tls-cert "$PKI/gpu-$n.crt" --tls-key "$PKI/gpu-$n.key" \
    --report-interval 500ms --state-dir "$DATA/state-gpu-$n" "${JOB_USER[@]}" \
    --metrics-listen "127.0.0.1:$((${JOULE_DEMO_METRICS_PORT:-9464} + 10#$n))" \
    >"$DATA/agent-$n.log" 2>&1 &
  PIDS+=($!)
done
for i in $(seq 1 100); do
  [ "$("$BIN/joulectl" --token-file "$DATA/db/operator.token" node list | grep -c ' ready ')" = 4 ] && break; sleep 0.1
done
sleep 1
ctl node list

step "tenants, prices and a reserved contract"
MONTH=$(date -u +%Y-%m)
START=$(date -u +%Y-%m-01)
END=$(date -u -d "$START +1 year" +%Y-%m-%d)
LAST_START=$(date -u -d "$START -1 month" +%Y-%m-%d)
LAST=$(date -u -d "$START -1 month" +%Y-%m)
ctl tenant create acme
ctl tenant create globex
ctl price set gpu-hour --gpu-model H100 --class on-demand --price 2.49 --from "$START"
ctl price set gpu-hour --gpu-model H100 --class spot --price 1.10 --from "$START"
ctl price set inference --model llama-3-70b --input 0.60 \
  --output 0:0.80,1000000000:0.60 --per-request 0.0001 --from "$LAST_START"
ctl contract create --tenant acme --gpu-model H100 --gpus 8 \
  --start "$START" --end "$END" --rate 1.89

step "tokens: one per tenant, a metering feed, finance (each printed once)"
for who in acme globex; do
  TOKENS[$who]=$("$BIN/joulectl" --token-file "$DATA/db/operator.token" token create \
    --role tenant --tenant "$who" --name "$who demo user" --expires 1d)
done
TOKENS[metering]=$("$BIN/joulectl" --token-file "$DATA/db/operator.token" token create \
  --role metering --name "inference gateway" --expires 1d)
TOKENS[finance]=$("$BIN/joulectl" --token-file "$DATA/db/operator.token" token create \
  --role finance --name "finance team" --expires 1d)
ctl token list
step "jobs: reserved, on-demand and spot, under the rack caps"
as acme job submit --class reserved --gpus 8 --gpu-model H100 \
  --name train-a -- /bin/sh -c 'echo "training on GPUs $CUDA_VISIBLE_DEVICES as $(id -un)"; sleep 8'
as acme job submit --class reserved --gpus 4 --gpu-model H100 \
  --name train-b -- /bin/sh -c 'sleep 6'
as globex job submit --gpus 8 --name finetune --min-power 400W \
  -- /bin/sh -c 'sleep 8'
as globex job submit --class spot --gpus 4 --power 300W \
  --name batch-spot -- /bin/sh -c 'sleep 30'
as globex job submit --class spot --gpus 8 --name batch-spot-big \
  -- /bin/sh -c 'sleep 30'
sleep 2
ctl job list
echo "(a tenant sees only its own jobs, and may not touch the caps)"
as globex job list
as globex power set-cap row-1 1kW || true
ctl power tree

step "demand response: row-1 cut to 19 kW (spot throttled to its minimum, then preempted; on-demand throttled only for what is left)"
ctl power set-cap row-1 19kW --yes --reason "utility demand-response event"
sleep 2
ctl power tree
ctl events --since 1m --kind throttle
ctl events --since 1m --kind preempt

step "inference usage: the Azure LLM code trace, re-timed to the last hour"
python3 - "$DATA/usage.csv" <<'PY'
import csv, sys, datetime as dt
src = "../shared/data/azure_llm2023_AzureLLMInferenceTrace_code.csv"
now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
base = now - dt.timedelta(hours=1, minutes=5)
with open(src) as f, open(sys.argv[1], "w") as out:
    rows = list(csv.DictReader(f))
    t0 = dt.datetime.strptime(rows[0]["TIMESTAMP"][:19], "%Y-%m-%d %H:%M:%S")
    out.write("timestamp,tenant,model,requests,input_tokens,output_tokens,idempotency_key\n")
    for i, r in enumerate(rows):
        t = dt.datetime.strptime(r["TIMESTAMP"][:19], "%Y-%m-%d %H:%M:%S")
        ts = (base + (t - t0)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.write(f"{ts},acme,llama-3-70b,1,{r['ContextTokens']},{r['GeneratedTokens']},azure-code-{i}\n")
PY
as metering usage import "$DATA/usage.csv"
echo "(importing the same file again counts nothing twice)"
as metering usage import "$DATA/usage.csv"

step "waiting for the jobs to finish"
for i in $(seq 1 60); do
  left=$("$BIN/joulectl" --token-file "$DATA/db/operator.token" job list | grep -cE ' (pending|starting|running) ' || true)
  [ "$left" -le 1 ] && break; sleep 1
done
ctl power set-cap row-1 60kW --reason "event over"
ctl job list
as acme job logs job-000001

step "finance: last month finalized, a credit note, prepaid credits"
as metering usage record --tenant globex --model llama-3-70b --input-tokens 50000000 \
  --output-tokens 20000000 --time "${LAST}-15T12:00:00Z" --key demo-last-month
as finance billing finalize --period "$LAST"
as finance billing credit --tenant globex --statement "JS-${LAST}-000001" \
  --amount 5.00 --reason "SLA: 2 h outage"
as finance billing grant --tenant acme --amount 100.00
as finance billing credits --tenant acme
as finance billing export --period "$LAST"

step "statements and backlog as finance (acme: reserved overage and prepaid credits; globex: the credit note)"
as finance billing statement --tenant acme --period "$MONTH"
as finance billing statement --tenant globex --period "$MONTH"
as finance billing backlog
echo "(a tenant reads its own statement, and no one else's)"
as acme billing statement --period "$MONTH" -o csv | head -3
as acme billing statement --tenant globex --period "$MONTH" || true

step "audit log: every change, who made it, and what was refused"
ctl audit --since 10m --limit 20
if [ "${JOULE_DEMO_HOLD:-0}" -gt 0 ]; then
  step "holding for ${JOULE_DEMO_HOLD}s: dashboard at http://$METRICS/, metrics at http://$METRICS/metrics"
  sleep "$JOULE_DEMO_HOLD"
fi
step "done: stopping jouled and the agents"
