# Sourced (not run) by the benchmark scripts, from the repo root:
# bench/loadgen/e2e_jobs.sh, bench/loadgen/array_cpu_pair.sh,
# bench/loadgen/supervisor_cost.sh and bench/vs-slurm/run.sh.

# A TCP port on 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# joule_cluster DIR BIN PREFIX: one Joule cluster as a user runs it. jouled
# over TLS with tokens (certificates from scripts/dev-pki.sh in DIR/pki,
# RocksDB in DIR/db, a free loopback port), 4 simulated agents PREFIX-1..4
# with 8 GPUs each (jobs as nobody when run as root: jobs never run as
# root), a tenant `bench` with its own token. Waits until the 4 agents are
# ready; on a failure prints the logs and returns 1. Sets JOULE_SERVER,
# JOULE_CA and JOULE_TOKEN_FILE (the operator's; exported), JOULED_PID,
# AGENT_PIDS (an array) and TENANT_TOKEN (the tenant's token file), and
# appends every pid it started to PIDS, which the caller stops.
joule_cluster() {
  local dir=$1 bin=$2 prefix=$3 n i
  mkdir -p "$dir"
  bash scripts/dev-pki.sh "$dir/pki" "$prefix-1" "$prefix-2" "$prefix-3" "$prefix-4" >/dev/null 2>&1
  JOULE_SERVER="127.0.0.1:$(free_port)"
  export JOULE_SERVER JOULE_CA="$dir/pki/ca.crt" JOULE_TOKEN_FILE="$dir/db/operator.token"
  "$bin/jouled" --listen "$JOULE_SERVER" --data-dir "$dir/db" \
    --tls-cert "$dir/pki/server.crt" --tls-key "$dir/pki/server.key" --tls-ca "$dir/pki/ca.crt" \
    --metrics-listen 127.0.0.1:0 >"$dir/jouled.log" 2>&1 &
  JOULED_PID=$!
  PIDS+=("$JOULED_PID")
  for ((i = 0; ; i++)); do
    [[ -s $JOULE_TOKEN_FILE ]] && "$bin/joulectl" tenant list >/dev/null 2>&1 && break
    ((i < 200)) || { echo "jouled did not come up:" >&2; cat "$dir/jouled.log" >&2; return 1; }
    sleep 0.1
  done
  local job_user=()
  [[ $(id -u) == 0 ]] && job_user=(--job-user nobody)
  AGENT_PIDS=()
  for n in 1 2 3 4; do
    "$bin/joule-agent" --server "$JOULE_SERVER" --node-name "$prefix-$n" --log-dir "$dir/logs-$n" \
      --ca "$dir/pki/ca.crt" --tls-cert "$dir/pki/$prefix-$n.crt" --tls-key "$dir/pki/$prefix-$n.key" \
      --state-dir "$dir/state-$n" "${job_user[@]}" >"$dir/agent-$n.log" 2>&1 &
    AGENT_PIDS+=($!)
    PIDS+=($!)
  done
  for ((i = 0; ; i++)); do
    [[ $("$bin/joulectl" node list | grep -c ' ready ') == 4 ]] && break
    ((i < 300)) || { echo "the agents did not come up:" >&2; "$bin/joulectl" node list >&2; return 1; }
    sleep 0.1
  done
  "$bin/joulectl" tenant create bench >/dev/null
  "$bin/joulectl" token create --role tenant --tenant bench 2>/dev/null >"$dir/bench.token"
  TENANT_TOKEN=$dir/bench.token
}

# The CPU every kernel thread has used so far, in clock ticks (utime +
# stime; memcg and inode work the kernel defers lands there; the whole
# machine's, so others' too).
kernel_thread_ticks() {
  local f l
  for f in /proc/[0-9]*/stat; do
    { read -r l <"$f"; } 2>/dev/null || continue
    set -- ${l##*) }
    [[ $2 == 2 ]] && echo $((${12} + ${13}))
  done | awk '{s += $1} END {print s + 0}'
}
