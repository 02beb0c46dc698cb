#!/usr/bin/env bash
# Restart time after SIGKILL with a million keys, kvstore next to Redis, in one run.
#
#   bench/recovery-time.sh [KEYS] [VALUE_BYTES] [ROUNDS]     (defaults: 1000000 100 3)
#
# Both servers get the same load through their Redis port (`redis-cli --pipe`, one SET per
# key, values of VALUE_BYTES): Redis 7 with appendonly yes, appendfsync everysec and no RDB,
# kvstore `serve` with --fsync interval:1000 (both fsync their log once a second). After the
# load and two seconds for the last fsync, each is killed with SIGKILL and started again on
# its data; the time from the start until it answers DBSIZE with every key is measured,
# ROUNDS times each (alternating), and the medians and their ratio are printed. Then the
# engine alone (Engine::open, from hint files and by a full scan of the segments).
# Installs what it needs (redis-server, redis-tools) and builds kvstore in release mode.
source "$(dirname "$0")/lib.sh"

KEYS="${1:-1000000}"
VALUE_BYTES="${2:-100}"
ROUNDS="${3:-3}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

apt_install redis-server redis-tools
echo "building kvstore (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore)
KVSTORE="$ROOT/target/release/kvstore"

echo "machine: $(nproc) cores, $(uname -sr); $(date -u +%Y-%m-%d)"
echo "load: $KEYS keys, $VALUE_BYTES-byte values, via redis-cli --pipe"

LOAD="$BENCH_TMP/load.resp"
python3 - "$KEYS" "$VALUE_BYTES" "$LOAD" <<'EOF'
import sys
keys, size, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
value = b"v" * size
with open(path, "wb", buffering=1 << 20) as out:
    for i in range(keys):
        key = b"key:%010d" % i
        out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF

REDIS_DIR="$BENCH_TMP/redis"
KV_DIR="$BENCH_TMP/kv"
mkdir -p "$REDIS_DIR" "$KV_DIR"
REDIS_PORT=$(free_port)
KV_PORT=$(free_port)
KV_BIN_PORT=$(free_port)
KV_HTTP_PORT=$(free_port)

start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
    --appendonly yes --appendfsync everysec --save "" --daemonize no \
    --logfile "$BENCH_TMP/redis.log" &
  PID=$!
  BENCH_PIDS+=("$PID")
}

start_kvstore() {
  "$KVSTORE" serve --data-dir "$KV_DIR" --fsync interval:1000 \
    --listen "127.0.0.1:$KV_BIN_PORT" --resp-listen "127.0.0.1:$KV_PORT" \
    --http-listen "127.0.0.1:$KV_HTTP_PORT" 2>>"$BENCH_TMP/kv.log" &
  PID=$!
  BENCH_PIDS+=("$PID")
}

# ready PORT: waits until the server on PORT answers DBSIZE with every key.
ready() {
  for _ in $(seq 1 6000); do
    n=$(redis-cli -h 127.0.0.1 -p "$1" dbsize 2>/dev/null || true)
    [ "$n" = "$KEYS" ] && return 0
    sleep 0.005
  done
  echo "port $1 never answered with $KEYS keys (last: $n)" >&2
  return 1
}

# restart NAME: kills the server (PID) with SIGKILL, starts it again (PID is the new one) and
# sets TOOK to the seconds until it answers with every key.
restart() {
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true
  local port=$KV_PORT
  [ "$1" = redis ] && port=$REDIS_PORT
  local started
  started=$(date +%s.%N)
  "start_$1"
  ready "$port"
  TOOK=$(awk -v a="$(date +%s.%N)" -v b="$started" 'BEGIN {printf "%.3f", a - b}')
}

for name in redis kvstore; do
  "start_$name"
  port=$KV_PORT; [ "$name" = redis ] && port=$REDIS_PORT
  wait_for_port "$port"
  loaded=$(date +%s.%N)
  redis-cli -h 127.0.0.1 -p "$port" --pipe <"$LOAD" >/dev/null
  ready "$port"
  printf '%-8s loaded in %.1f s\n' "$name" "$(awk -v a="$(date +%s.%N)" -v b="$loaded" 'BEGIN {print a - b}')"
  sleep 2 # the last once-a-second fsync
  eval "${name}_PID=$PID"
done
echo "disk: redis $(du -sm "$REDIS_DIR" | cut -f1) MiB, kvstore $(du -sm "$KV_DIR" | cut -f1) MiB"

r=(); k=()
for round in $(seq 1 "$ROUNDS"); do
  PID=$redis_PID; restart redis; r+=("$TOOK"); redis_PID=$PID
  PID=$kvstore_PID; restart kvstore; k+=("$TOOK"); kvstore_PID=$PID
done
rm=$(median "${r[@]}"); km=$(median "${k[@]}")
echo
echo "restart after SIGKILL until every key is served (median of $ROUNDS):"
printf '%-10s %8s s   (runs: %s)\n' redis "$rm" "${r[*]}" kvstore "$km" "${k[*]}"
printf '%-10s %8.2f\n' "kvstore/redis" "$(awk -v a="$km" -v b="$rm" 'BEGIN {print a / b}')"

echo
echo "the engine alone (Engine::open):"
cargo run --release -q -p kvstore --example recovery_time -- "$KEYS" "$VALUE_BYTES"
