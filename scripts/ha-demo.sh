#!/usr/bin/env bash
# One-command local HA demo (docs/ha.md): 3 etcd members, 2 jouled
# (--store etcd), 2 simulated agents and joulectl, all on 127.0.0.1. Submits
# jobs, kills the leader with SIGKILL and shows the standby take over: the
# jobs keep running (same attempt), the agents follow the new leader, new
# submissions work. Stops everything it started when it ends (or on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${NO_BUILD:-0}" == 1 ]] || bash scripts/build.sh  # NO_BUILD=1: use build/bin as it is
BIN=build/bin
command -v etcd >/dev/null || bash scripts/install-deps.sh
DATA=ha-demo-data
rm -rf "$DATA" && mkdir -p "$DATA"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
ctl() { echo "\$ joulectl $*"; "$BIN/joulectl" "$@"; }
step() { printf '\n=== %s\n' "$*"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
leader() { ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" get /joule/leader --print-value-only; }

step "starting 3 etcd members"
CLUSTER=""; CLIENTS=(); PEERS=()
for i in 0 1 2; do
  c=$(free_port); p=$(free_port)
  CLIENTS+=("http://127.0.0.1:$c"); PEERS+=("http://127.0.0.1:$p")
  CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$p"
done
for i in 0 1 2; do
  etcd --name "e$i" --data-dir "$DATA/etcd$i" \
    --listen-client-urls "${CLIENTS[$i]}" --advertise-client-urls "${CLIENTS[$i]}" \
    --listen-peer-urls "${PEERS[$i]}" --initial-advertise-peer-urls "${PEERS[$i]}" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --max-txn-ops 10240 --max-request-bytes 10485760 \
    --logger zap --log-level warn >"$DATA/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
ENDPOINTS=$(IFS=,; echo "${CLIENTS[*]}")
sleep 2
echo "etcd: $ENDPOINTS"

# TLS with a development PKI; the first leader writes the operator token.
bash scripts/dev-pki.sh "$DATA/pki" gpu-01 gpu-02 2>/dev/null
export JOULE_CA="$DATA/pki/ca.crt"
declare -A JPID
start_jouled() {  # port
  "$BIN/jouled" --store etcd --etcd-endpoints "$ENDPOINTS" \
    --etcd-max-txn-ops 10240 --etcd-max-request-bytes 10485760 \
    --listen "127.0.0.1:$1" --advertise "127.0.0.1:$1" \
    --data-dir "$DATA/jouled-$1" --metrics-listen 127.0.0.1:0 \
    --tls-cert "$DATA/pki/server.crt" --tls-key "$DATA/pki/server.key" \
    --tls-ca "$DATA/pki/ca.crt" \
    --config examples/demo-cluster.conf --report-interval 500ms \
    --heartbeat-timeout 3s >>"$DATA/jouled-$1.log" 2>&1 &
  JPID[$1]=$!
  PIDS+=($!)
}
A=$(free_port); B=$(free_port)
export JOULE_SERVER="127.0.0.1:$A,127.0.0.1:$B"
step "starting jouled on :$A, then a standby on :$B"
start_jouled "$A"
export JOULE_TOKEN_FILE="$DATA/jouled-$A/operator.token"
for _ in $(seq 1 100); do
  [ -s "$JOULE_TOKEN_FILE" ] && "$BIN/joulectl" tenant list >/dev/null 2>&1 && break; sleep 0.1
done
start_jouled "$B"
sleep 0.5
echo "leader: $(leader)"
echo "\$ joulectl --server 127.0.0.1:$B tenant list    # the standby answers:"
"$BIN/joulectl" --server "127.0.0.1:$B" tenant list || true

step "2 simulated agents (8 x H100 each) with --server $JOULE_SERVER"
JOB_USER=()
[ "$(id -u)" = 0 ] && JOB_USER=(--job-user nobody)
for n in 01 02; do
  "$BIN/joule-agent" --server "$JOULE_SERVER" --node-name "gpu-$n" --sim-gpus 8 \
    --ca "$DATA/pki/ca.crt" --tls-cert "$DATA/pki/gpu-$n.crt" --tls-key "$DATA/pki/gpu-$n.key" \
    --state-dir "$DATA/state-gpu-$n" "${JOB_USER[@]}" \
    --report-interval 500ms --log-dir "$DATA/logs-gpu-$n" >"$DATA/agent-$n.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 1 100); do
  [ "$("$BIN/joulectl" node list | grep -c ' ready ')" = 2 ] && break; sleep 0.1
done
ctl node list
ctl tenant create acme
ctl price set gpu-hour --gpu-model H100 --class on-demand --price 2.49 --from "$(date -u +%Y-%m-01)"
J1=$(ctl job submit --tenant acme --gpus 8 --gpu-model H100 --name train -- sleep 120 | tail -1)
J2=$(ctl job submit --tenant acme --gpus 4 --gpu-model H100 --name eval -- sleep 120 | tail -1)
for _ in $(seq 1 100); do
  [ "$("$BIN/joulectl" job list | grep -c ' running ')" = 2 ] && break; sleep 0.1
done
ctl job list

OLD=$(leader); OLD_PORT=${OLD##*:}
step "SIGKILL the leader ($OLD, pid ${JPID[$OLD_PORT]})"
T0=$(date +%s.%N)
kill -9 "${JPID[$OLD_PORT]}"
until [ -n "$(leader)" ] && [ "$(leader)" != "$OLD" ]; do sleep 0.05; done
T1=$(date +%s.%N)
echo "new leader: $(leader), $(python3 -c "print(f'{$T1-$T0:.2f}')") s after the kill"
until "$BIN/joulectl" node list 2>/dev/null | grep -q ' ready '; do sleep 0.2; done
sleep 1.5
ctl node list
echo "(the jobs run on, still attempt 1:)"
ctl job show "$J1" | grep -E '^(state|attempt)' || ctl job show "$J1"
ctl job list
ctl job submit --tenant acme --gpus 2 --gpu-model H100 --name after-failover -- sleep 5

step "restart the old leader: it comes back as a standby"
start_jouled "$OLD_PORT"
sleep 1
"$BIN/joulectl" --server "$OLD" tenant list || true
echo
echo "logs in $DATA/ (jouled-*.log, agent-*.log, etcd*.log)"
