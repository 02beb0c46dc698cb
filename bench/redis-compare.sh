#!/usr/bin/env bash
# kvstore's RESP port against Redis, side by side in one run, with redis-benchmark.
#
#   bench/redis-compare.sh [ROUNDS]        (default 3 rounds; the median of each is reported)
#   RANDOM_KEYS=1000000 bench/redis-compare.sh   (spread the keys over a random keyspace, -r)
#
# Redis 7 (Debian's redis-server) runs with appendonly yes + appendfsync everysec and no RDB;
# kvstore runs with --fsync interval:1000: both fsync their log once a second. For each test
# (SET, GET; without and with -P 16) the two servers are measured alternately, ROUNDS times,
# with `redis-benchmark -t set,get -n 200000 -c 50`, and the script prints requests/s and the
# ratio kvstore/redis. Then writes/s at 50 clients with fsync on every write: kvstore
# --fsync always (group commit) next to Redis appendfsync always.
# Installs what it needs (redis-server, redis-tools) and builds kvstore in release mode.
source "$(dirname "$0")/lib.sh"

ROUNDS="${1:-3}"
# Worker threads for kvstore; empty = the default (one fewer than the cores, at least one). Redis executes commands on one thread.
KV_THREADS="${KV_THREADS:-}"
# 0 = redis-benchmark's default single key; N = random keys out of N (-r N).
RANDOM_KEYS="${RANDOM_KEYS:-0}"
KEYS_ARGS=()
[ "$RANDOM_KEYS" -gt 0 ] && KEYS_ARGS=(-r "$RANDOM_KEYS")
REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-50}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

apt_install redis-server redis-tools
echo "building kvstore (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore)
KVSTORE="$ROOT/target/release/kvstore"

start_redis() { # start_redis FSYNC -> sets REDIS_PORT
  REDIS_PORT=$(free_port)
  mkdir -p "$BENCH_TMP/redis-$1"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$BENCH_TMP/redis-$1" \
    --appendonly yes --appendfsync "$1" --save "" --daemonize no \
    --logfile "$BENCH_TMP/redis-$1.log" &
  REDIS_PID=$!
  BENCH_PIDS+=("$REDIS_PID")
  wait_for_port "$REDIS_PORT"
}

start_kvstore() { # start_kvstore FSYNC -> sets KV_PORT
  KV_PORT=$(free_port)
  "$KVSTORE" serve --data-dir "$BENCH_TMP/kv-$1" --fsync "$1" \
    --listen "127.0.0.1:$(free_port)" --resp-listen "127.0.0.1:$KV_PORT" \
    --http-listen "127.0.0.1:$(free_port)" ${KV_THREADS:+--threads "$KV_THREADS"} \
    2>"$BENCH_TMP/kv.log" &
  KV_PID=$!
  BENCH_PIDS+=("$KV_PID")
  wait_for_port "$KV_PORT"
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# rps PORT TEST [EXTRA...]: requests/s of one redis-benchmark test.
rps() {
  local port=$1 test=$2
  shift 2
  redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$REQUESTS" -c "$CLIENTS" \
    "${KEYS_ARGS[@]}" --csv "$@" 2>/dev/null |
    awk -F'","' 'NR>1 {print $2; exit}'
}

start_redis everysec
start_kvstore "interval:1000"
echo
echo "redis-benchmark -n $REQUESTS -c $CLIENTS ${KEYS_ARGS[*]}, median of $ROUNDS alternating rounds"
echo "Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-) (appendonly, everysec) vs kvstore (--fsync interval:1000, threads: ${KV_THREADS:-default})"
echo "machine: $(nproc) cores, $(uname -sr); $(date -u +%Y-%m-%d)"
echo
printf '%-14s %14s %14s %8s\n' test redis_rps kvstore_rps ratio
for pipeline in 1 16; do
  for test in set get; do
    r=(); k=()
    for round in $(seq 1 "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then
        r+=("$(rps "$REDIS_PORT" "$test" -P "$pipeline")"); k+=("$(rps "$KV_PORT" "$test" -P "$pipeline")")
      else
        k+=("$(rps "$KV_PORT" "$test" -P "$pipeline")"); r+=("$(rps "$REDIS_PORT" "$test" -P "$pipeline")")
      fi
    done
    rm=$(median "${r[@]}"); km=$(median "${k[@]}")
    label="$(echo "$test" | tr a-z A-Z)"; [ "$pipeline" -gt 1 ] && label="$label -P $pipeline"
    printf '%-14s %14.0f %14.0f %8.2f\n' "$label" "$rm" "$km" "$(awk -v a="$km" -v b="$rm" 'BEGIN {print a / b}')"
  done
done
stop "$REDIS_PID"; stop "$KV_PID"

echo
echo "fsync on every write, $CLIENTS clients, no pipelining (SET, -n $((REQUESTS / 4)))"
REQUESTS=$((REQUESTS / 4))
start_kvstore always
start_redis always
k=$(rps "$KV_PORT" set); r=$(rps "$REDIS_PORT" set)
printf '%-28s %10.0f writes/s\n' "kvstore --fsync always" "$k" "redis appendfsync always" "$r"
printf '%-28s %10.2f\n' "ratio kvstore/redis" "$(awk -v a="$k" -v b="$r" 'BEGIN {print a / b}')"
fsyncs=$(curl -s "http://$(grep -o 'http=[0-9.:]*' "$BENCH_TMP/kv.log" | head -1 | cut -d= -f2)/metrics" 2>/dev/null |
  awk '/^kvstore_fsyncs_total/ {print $2}')
[ -n "$fsyncs" ] && printf '%-28s %10s (for %s writes: group commit)\n' "kvstore fsync calls" "$fsyncs" "$REQUESTS"
