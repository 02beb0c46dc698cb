#!/usr/bin/env bash
# kvstore's RESP port as a Redis Cluster against a real Redis Cluster, side by side in one run,
# both driven by `redis-benchmark --cluster`.
#
#   bench/redis-cluster-compare.sh [REQUESTS]     (default 200000 requests per test; the
#                                                  -P 16 pass sends PIPE_REQUESTS, 5 x as many)
#   RANDOM_KEYS=1000000 bench/redis-cluster-compare.sh   (random keys, -r; default: one key per node)
#
# kvstore: 3 nodes on this machine (--peers 1=..,2=..,3=..), the keyspace `default` in its
# default 64 partitions of 3 replicas, --fsync always (the default, as in partitions.sh: a write
# is acknowledged once a majority of its partition's replicas have fsynced it), linearizable
# RESP reads (the default), --idle-spin-us 0 (as in partitions.sh: 3 nodes share the cores).
# The script waits until every group has a leader and the placement has settled.
# Redis: 3 masters (Debian's redis-server, cluster-enabled, appendonly yes, appendfsync
# everysec, no RDB) joined with `redis-cli --cluster create ... --cluster-replicas 0`: no
# replication at all, and a write is acknowledged before it reaches the disk. So the ratio is a
# reference, not a like-for-like comparison.
#
# Load: `redis-benchmark --cluster -t set,get -n REQUESTS -c 32 -d 256`, once without and once
# with -P 16 (and -n PIPE_REQUESTS: redis-benchmark times a test in whole milliseconds, and
# Redis finishes 200,000 pipelined requests in about half a second), against kvstore and then
# against Redis (the two clusters never run at once: they would share the cores). Each client
# sticks to one node and tags every request (every batch of 16 with -P 16) with the hash tag of
# a random slot of that node, so the load spreads over the slots (and kvstore partitions) each
# node leads; the rest of the key is fixed unless RANDOM_KEYS is set. Prints a Markdown table:
# requests/s of each, the ratio kvstore/Redis, and p50/p99 latency (from --csv). Errors and
# "slots configuration changed" (MOVED) notices that redis-benchmark printed, and WARN/ERROR
# lines in kvstore's logs before its shutdown, are counted under the table.
# Installs what it needs (redis-server, redis-tools); builds kvstore in release mode if missing.
source "$(dirname "$0")/lib.sh"

REQUESTS="${1:-200000}"
PIPE_REQUESTS="${PIPE_REQUESTS:-$((REQUESTS * 5))}"
CLIENTS=32
SIZE=256
RANDOM_KEYS="${RANDOM_KEYS:-0}"
KEYS_ARGS=()
[ "$RANDOM_KEYS" -gt 0 ] && KEYS_ARGS=(-r "$RANDOM_KEYS")
ROOT=$(cd "$(dirname "$0")/.." && pwd)

apt_install redis-server redis-tools
KVSTORE="$ROOT/target/release/kvstore"
if [ ! -x "$KVSTORE" ]; then
  echo "building kvstore (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p kvstore)
fi

# --- Redis Cluster: 3 masters ----------------------------------------------------------------

# start_redis_cluster: sets REDIS_PORTS and REDIS_PIDS.
start_redis_cluster() {
  local i port bus
  declare -g -a REDIS_PORTS=() REDIS_PIDS=()
  for i in 1 2 3; do
    port=$(free_port)
    bus=$(free_port) # cluster bus on its own free port (default would be port + 10000)
    mkdir -p "$BENCH_TMP/redis-$i"
    redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-port "$bus" \
      --cluster-config-file "$BENCH_TMP/redis-$i/nodes.conf" --dir "$BENCH_TMP/redis-$i" \
      --appendonly yes --appendfsync everysec --save "" --daemonize no \
      --logfile "$BENCH_TMP/redis-$i.log" &
    REDIS_PIDS+=("$!")
    BENCH_PIDS+=("$!")
    REDIS_PORTS+=("$port")
  done
  for port in "${REDIS_PORTS[@]}"; do wait_for_port "$port"; done
  redis-cli --cluster create "${REDIS_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
    >"$BENCH_TMP/redis-create.log" 2>&1 || { cat "$BENCH_TMP/redis-create.log" >&2; return 1; }
  for _ in $(seq 1 200); do
    local ok=0
    for port in "${REDIS_PORTS[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && return 0
    sleep 0.1
  done
  echo "redis: cluster_state is not ok after 20 s" >&2
  return 1
}

stop_pids() {
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# bench NAME PORT PIPELINE: one redis-benchmark --cluster run of set,get; the CSV goes to
# $BENCH_TMP/NAME-PIPELINE.csv and stderr to .err.
bench() {
  local name=$1 port=$2 pipeline=$3 out="$BENCH_TMP/$1-$3" n=$REQUESTS
  [ "$pipeline" -gt 1 ] && n=$PIPE_REQUESTS
  echo "  $name: redis-benchmark --cluster -t set,get -n $n -P $pipeline ..." >&2
  redis-benchmark --cluster -h 127.0.0.1 -p "$port" -t set,get -n "$n" -c "$CLIENTS" \
    -d "$SIZE" -P "$pipeline" "${KEYS_ARGS[@]}" -q --csv >"$out.csv" 2>"$out.err" ||
    echo "  $name -P $pipeline: redis-benchmark exited with status $?" >&2
}

echo "kvstore: starting 3 nodes, waiting for every group's leader and a settled placement..." >&2
start_cluster kv 64
wait_led >/dev/null
wait_settled >/dev/null
for pipeline in 1 16; do bench kvstore "${RESP_PORT[1]}" "$pipeline"; done
# (Before the stop: stopping all three at once logs that leadership could not be handed over.)
grep -hE '\b(WARN|ERROR)\b' "$BENCH_TMP"/kv-[123].log >"$BENCH_TMP/kv-warnings.txt" || true
stop_cluster

echo "redis: starting a 3-master Redis Cluster..." >&2
start_redis_cluster
for pipeline in 1 16; do bench redis "${REDIS_PORTS[0]}" "$pipeline"; done
stop_pids "${REDIS_PIDS[@]}"

echo
echo "redis-benchmark --cluster -n $REQUESTS (-P 16: $PIPE_REQUESTS) -c $CLIENTS -d $SIZE${KEYS_ARGS[*]:+ ${KEYS_ARGS[*]}}; kvstore" \
  "$(git -C "$ROOT" rev-parse --short HEAD) (3 nodes, 64 partitions x 3 replicas, fsync always," \
  "linearizable GET) vs Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-) Cluster" \
  "(3 masters, no replicas, AOF everysec); $(nproc) cores, $(uname -sr); $(date -u '+%F %H:%M UTC')"
echo
python3 - "$BENCH_TMP" <<'PY'
import csv, os, re, sys
tmp = sys.argv[1]

def load(name, pipeline):
    path = os.path.join(tmp, f"{name}-{pipeline}.csv")
    rows = {}
    if os.path.exists(path):
        # redis-benchmark --cluster prints the masters it found before the CSV header.
        with open(path) as f:
            lines = [l for l in f if l.startswith('"')]
        for row in csv.DictReader(lines):
            rows[row["test"]] = row
    return rows

def num(row, key):
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None

def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)

print("| test | kvstore ops/s | Redis Cluster ops/s | ratio | kvstore p50/p99 ms | Redis p50/p99 ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for pipeline in (1, 16):
    kv, rd = load("kvstore", pipeline), load("redis", pipeline)
    for test in ("SET", "GET"):
        k, r = kv.get(test, {}), rd.get(test, {})
        kr, rr = num(k, "rps"), num(r, "rps")
        ratio = kr / rr if kr and rr else None
        label = test + (f" -P {pipeline}" if pipeline > 1 else "")
        lat = lambda row: f'{fmt(num(row, "p50_latency_ms"), ".2f")} / {fmt(num(row, "p99_latency_ms"), ".2f")}'
        print(f"| {label} | {fmt(kr, '.0f')} | {fmt(rr, '.0f')} | {fmt(ratio, '.2f')} | {lat(k)} | {lat(r)} |")

notes = []
for name in ("kvstore", "redis"):
    for pipeline in (1, 16):
        path = os.path.join(tmp, f"{name}-{pipeline}.err")
        if not os.path.exists(path):
            continue
        lines = [l.strip() for l in open(path, errors="replace") if l.strip()]
        moved = sum("configuration changed" in l for l in lines)
        others = {}
        for l in lines:
            if "configuration changed" not in l:
                others[l] = others.get(l, 0) + 1
        if moved:
            notes.append(f"{name} -P {pipeline}: {moved} slots-configuration refetches (MOVED/ASK)")
        for l, n in sorted(others.items(), key=lambda x: -x[1])[:5]:
            notes.append(f"{name} -P {pipeline}: {n}x stderr: {l[:160]}")
warnings = [re.sub(r"\x1b\[[0-9;]*m", "", l).strip()
            for l in open(os.path.join(tmp, "kv-warnings.txt"), errors="replace") if l.strip()]
if warnings:
    notes.append(f"kvstore node logs (start and load): {len(warnings)} WARN/ERROR lines, e.g. `{warnings[0][:200]}`")
if notes:
    print()
    for n in notes:
        print("- " + n)
PY
