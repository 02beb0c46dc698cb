#!/usr/bin/env bash
# A 3-node kvstore cluster against a 3-member etcd 3.4 cluster, side by side in one run, then
# kvstore's failover time.
#
#   bench/etcd-compare.sh [SECONDS]       (default 10 seconds per measurement)
#   KILLS=10 bench/etcd-compare.sh        (leader kills for the failover figure)
#
# Both clusters run on loopback on this machine, fsync on commit (kvstore --fsync always, the
# WAL is fsynced before every acknowledgement; etcd always fsyncs its WAL). The same load
# loop (bench/kvbench, one connection and one request in flight per client) writes 8-byte
# sequential keys with 256-byte values to the leader, or reads random keys linearizably, with
# 1 and 32 clients. For each it prints ops/s, p50 and p99 and the ratio kvstore/etcd. Then it
# kills the leader of a fresh kvstore cluster KILLS times and prints the median time from the
# kill to the first acknowledged write.
# Installs what it needs (etcd-server, etcd-client, protobuf-compiler) and builds in release.
source "$(dirname "$0")/lib.sh"

SECONDS_PER="${1:-10}"
KILLS="${KILLS:-10}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

apt_install etcd-server etcd-client
build_kvstore_and_kvbench

# --- kvstore: 3 nodes ------------------------------------------------------------------------
PEERS=""
declare -a KV_PEER KV_ADDR
for i in 1 2 3; do
  KV_PEER[$i]=$(free_port)
  PEERS="${PEERS:+$PEERS,}$i=127.0.0.1:${KV_PEER[$i]}"
done
KV_ADDRS=""
for i in 1 2 3; do
  KV_ADDR[$i]=127.0.0.1:$(free_port)
  # One partition: one Raft group for the keyspace, as etcd is one (bench/partitions.sh
  # compares 64 partitions with it).
  "$KVSTORE" serve --data-dir "$BENCH_TMP/kv-$i" --fsync always --node-id "$i" --peers "$PEERS" \
    --default-partitions 1 \
    --peer-listen "127.0.0.1:${KV_PEER[$i]}" --listen "${KV_ADDR[$i]}" \
    --resp-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$(free_port)" \
    2>"$BENCH_TMP/kv-$i.log" &
  BENCH_PIDS+=("$!")
  KV_ADDRS="${KV_ADDRS:+$KV_ADDRS,}${KV_ADDR[$i]}"
done
for i in 1 2 3; do wait_for_port "${KV_ADDR[$i]#127.0.0.1:}"; done

# --- etcd: 3 members -------------------------------------------------------------------------
INITIAL=""
ETCD_ENDPOINTS=""
declare -a ETCD_CLIENT ETCD_PEER
for i in 0 1 2; do
  ETCD_CLIENT[$i]=$(free_port)
  ETCD_PEER[$i]=$(free_port)
  INITIAL="${INITIAL:+$INITIAL,}m$i=http://127.0.0.1:${ETCD_PEER[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$BENCH_TMP/etcd-m$i" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-cluster "$INITIAL" --initial-cluster-token "kvbench-$$" \
    --initial-cluster-state new >"$BENCH_TMP/etcd-m$i.log" 2>&1 &
  BENCH_PIDS+=("$!")
  ETCD_ENDPOINTS="${ETCD_ENDPOINTS:+$ETCD_ENDPOINTS,}127.0.0.1:${ETCD_CLIENT[$i]}"
done
for _ in $(seq 1 60); do
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1 && break
  sleep 0.5
done
ETCD_VERSION=$(etcd --version | head -1)

field() { # field JSON NAME
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

echo
echo "kvstore $(git -C "$ROOT" rev-parse --short HEAD) (3 nodes) vs $ETCD_VERSION (3 members);" \
  "$(nproc) cores; $SECONDS_PER s per measurement; 8-byte keys, 256-byte values; $(date -u +%F)"
printf '%-22s %12s %12s %7s   %9s %9s   %9s %9s\n' test kvstore/s etcd/s ratio \
  "kv p50" "etcd p50" "kv p99" "etcd p99"
for op in put get; do
  for clients in 1 32; do
    kv=$("$KVBENCH" kvstore "$KV_ADDRS" "$op" "$clients" "$SECONDS_PER")
    et=$("$KVBENCH" etcd "$ETCD_ENDPOINTS" "$op" "$clients" "$SECONDS_PER")
    name="$op, $clients client(s)"
    [ "$op" = get ] && name="get (lin.), $clients client(s)"
    python3 - "$name" "$kv" "$et" <<'PY'
import json, sys
name, kv, et = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = kv["ops_per_s"] / et["ops_per_s"] if et["ops_per_s"] else float("nan")
print(f'{name:<22} {kv["ops_per_s"]:12.0f} {et["ops_per_s"]:12.0f} {ratio:7.2f}   '
      f'{kv["p50_ms"]:7.2f}ms {et["p50_ms"]:7.2f}ms   {kv["p99_ms"]:7.2f}ms {et["p99_ms"]:7.2f}ms'
      + (f'   errors kv={kv["errors"]} etcd={et["errors"]}' if kv["errors"] or et["errors"] else ''))
PY
  done
done

echo
echo "failover: killing the leader of a fresh 3-node kvstore cluster $KILLS times (default timeouts)..." >&2
out=$(KVSTORE_BIN="$KVSTORE" "$KVBENCH" failover "$KILLS" 2>"$BENCH_TMP/failover.log")
echo "failover, kill -9 of the leader to the first acknowledged write: p50 $(field "$out" p50_ms) ms," \
  "max $(field "$out" max_ms) ms over $KILLS kills"
