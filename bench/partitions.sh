#!/usr/bin/env bash
# Partitioning, measured: a 3-node cluster with the keyspace `default` in 64 partitions
# against the same cluster with one partition (part 2's single Raft group), side by side in
# one run, then the idle cost, start and restart times of 1,024 partitions, and the data
# balance after two nodes join.
#
#   bench/partitions.sh [SECONDS]     (default 10 seconds per load measurement)
#   ROUNDS=5 bench/partitions.sh      (rounds of 1 against 64 partitions; default 3)
#   PARTITIONS_MANY=1024 bench/partitions.sh
#   ONLY_IDLE=1 bench/partitions.sh  (only the idle cost and start times)
#   SKIP_IDLE=1 bench/partitions.sh  (only the loads and the balance)
#   CLIENTS="32 128" bench/partitions.sh  (the client counts of the loads; this is the default)
#
# Load: bench/kvbench's `kvcluster` target, CLIENTS clients (each count in turn), each a
# ClusterClient with one request in flight, 8-byte sequential keys and 256-byte values, puts
# and then linearizable gets, fsync always. The two clusters run one after the other (never
# at once: they would share the two cores), alternating for ROUNDS rounds. Prints the medians of ops/s, p50 and p99 and
# the ratio 64 partitions / 1 partition, and the three nodes' CPU per operation (from /proc);
# then, per operation, the cluster's WAL fsyncs, Raft messages and context switches.
# Idle: 3 nodes hosting PARTITIONS_MANY partitions of 3 replicas (every node hosts every
# group), the time from starting the nodes until every group has a leader, then (once the
# placement has balanced the leaders and settled) CPU per node over 20 s of idleness (from
# /proc, user + system), and the time to every group led after a SIGTERM of all three and a
# restart. Balance: after the 64-partition load, two nodes join with --join;
# once the placement settles, the bytes each node holds, max/mean.
source "$(dirname "$0")/lib.sh"

SECONDS_PER="${1:-10}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-32 128}"
MANY="${PARTITIONS_MANY:-1024}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
build_kvstore_and_kvbench
TICKS=$(getconf CLK_TCK)

load() { # load OP CLIENTS: one kvbench run against $ADDRS; its JSON line, with the nodes' CPU
  local nodes=("${NODE_PIDS[1]}" "${NODE_PIDS[2]}" "${NODE_PIDS[3]}") before after out
  local counts_before counts_after
  counts_before=$(node_counts)
  before=$(cpu_ticks "${nodes[@]}")
  out=$("$KVBENCH" kvcluster "$ADDRS" "$1" "$2" "$SECONDS_PER")
  after=$(cpu_ticks "${nodes[@]}")
  counts_after=$(node_counts)
  # The three nodes' CPU (user + system) per operation: steadier than the rate on a shared
  # machine, since time other tenants take is not in it. So are the WAL fsyncs, Raft messages
  # and context switches per operation (`node_counts`).
  python3 -c 'import json, sys
r = json.loads(sys.argv[1])
ops = max(r["ops"], 1)
r["node_cpu_us_per_op"] = 1e6 * int(sys.argv[2]) / int(sys.argv[3]) / ops
b, a = [list(map(int, c.split())) for c in sys.argv[4:6]]
for name, i in (("fsyncs_per_op", 0), ("messages_per_op", 1), ("switches_per_op", 2)):
    r[name] = (a[i] - b[i]) / ops
print(json.dumps(r))' "$out" "$((after - before))" "$TICKS" "$counts_before" "$counts_after"
}

echo
echo "kvstore $(git -C "$ROOT" rev-parse --short HEAD), 3 nodes; $(nproc) cores; $SECONDS_PER s per" \
  "load; $CLIENTS clients; 8-byte keys, 256-byte values; fsync always; $(date -u +%F)"

# --- 1 partition against 64 -------------------------------------------------------------------
# The two alternate for ROUNDS rounds and the medians are compared: on a shared 2-core machine
# one run of either can be off by a quarter.
declare -A RESULT
for round in $(seq 1 "$ROUNDS"); do
for partitions in 1 64; do
  [ -n "${ONLY_IDLE:-}" ] && break
  start_cluster "p$partitions-$round" "$partitions"
  wait_led >/dev/null
  wait_settled >/dev/null
  for clients in $CLIENTS; do
    RESULT[put-$partitions-$clients]+="$(load put "$clients")"$'\n'
    RESULT[get-$partitions-$clients]+="$(load get "$clients")"$'\n'
  done
  if [ "$partitions" = 64 ] && [ "$round" = "$ROUNDS" ]; then
    # Balance: two nodes join; once the placement settles, bytes per node.
    for i in 4 5; do
      port=$(free_port)
      "$KVSTORE" serve --data-dir "$BENCH_TMP/p64-$i" --fsync always --node-id "$i" \
        --join "$PEER1" --peer-listen "127.0.0.1:$(free_port)" --listen "127.0.0.1:$port" \
        --resp-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$(free_port)" \
        --idle-spin-us 0 2>"$BENCH_TMP/p64-$i.log" &
      NODE_PIDS+=("$!")
      BENCH_PIDS+=("$!")
      wait_for_port "$port"
    done
    t0=$(date +%s)
    for _ in $(seq 1 600); do
      sleep 1
      "$KVSTORE" cluster --addr "$ADDRS" map | python3 -c 'import json,sys; m=json.load(sys.stdin); sys.exit(0 if len(m["nodes"]) == 5 and not m["rebalancing"] else 1)' && break
    done
    BALANCE_S=$(($(date +%s) - t0))
    "$KVSTORE" cluster --addr "$ADDRS" status --json >"$BENCH_TMP/balance.json"
  fi
  stop_cluster
done
done

if [ -z "${ONLY_IDLE:-}" ]; then
ARGS=()
for clients in $CLIENTS; do
  for op in put get; do
    ARGS+=("$op" "$clients" "${RESULT[$op-64-$clients]}" "${RESULT[$op-1-$clients]}")
  done
done
python3 - "$ROUNDS" "${ARGS[@]}" <<'PY'
import json, statistics, sys
rounds, args = sys.argv[1], sys.argv[2:]
rows = []  # (name, runs of 64 partitions, runs of 1)
for i in range(0, len(args), 4):
    op, clients, many, one = args[i:i + 4]
    runs = [[json.loads(l) for l in a.splitlines() if l.strip()] for a in (many, one)]
    name = f"put, {clients} clients" if op == "put" else f"get (lin.), {clients} clients"
    rows.append((name, *runs))

def medians(runs, keys):
    return {k: statistics.median(r[k] for r in runs) for k in keys}

print(f'\n{"test":<26} {"64 parts/s":>14} {"1 part/s":>14} {"ratio":>7}   {"64 p50":>9} {"1 p50":>9}   '
      f'{"64 p99":>9} {"1 p99":>9}   {"CPU µs/op":>13}   (medians of {rounds} rounds; ops/s of each '
      f'round 64 | 1)')
keys = ("ops_per_s", "p50_ms", "p99_ms", "node_cpu_us_per_op")
for name, *runs in rows:
    many, one = (medians(r, keys) for r in runs)
    errors = [sum(r["errors"] for r in rs) for rs in runs]
    ratio = many["ops_per_s"] / one["ops_per_s"] if one["ops_per_s"] else float("nan")
    each = " | ".join(" ".join(f'{r["ops_per_s"]:.0f}' for r in rs) for rs in runs)
    print(f'{name:<26} {many["ops_per_s"]:14.0f} {one["ops_per_s"]:14.0f} {ratio:7.2f}   '
          f'{many["p50_ms"]:7.2f}ms {one["p50_ms"]:7.2f}ms   {many["p99_ms"]:7.2f}ms {one["p99_ms"]:7.2f}ms   '
          f'{many["node_cpu_us_per_op"]:6.1f} {one["node_cpu_us_per_op"]:6.1f}   ({each})'
          + (f'   errors 64={errors[0]} 1={errors[1]}' if any(errors) else ''))

print(f'\n{"per operation, 64 / 1":<26} {"WAL fsyncs":>20} {"Raft messages":>20} {"context switches":>20}')
keys = ("fsyncs_per_op", "messages_per_op", "switches_per_op")
for name, *runs in rows:
    many, one = (medians(r, keys) for r in runs)
    print(f"{name:<26}" + "".join(f"{f'{many[k]:.2f} / {one[k]:.2f}':>21}" for k in keys))
PY
python3 - "$BENCH_TMP/balance.json" "$BALANCE_S" <<'PY'
import json, sys
o, took = json.load(open(sys.argv[1])), sys.argv[2]
nodes = [n for n in o["nodes"] if n["state"] == "up"]
b = [n["bytes"] for n in nodes]
mean = sum(b) / len(b)
print(f"\nbalance after 2 nodes joined the 64-partition cluster (settled in {took} s): "
      f"bytes per node {b}, max/mean {max(b) / mean:.2f}; "
      f"replicas {[n['replicas'] for n in nodes]}, leaders {[n['leaders'] for n in nodes]}")
PY
fi

# --- idle cost and start times with many partitions --------------------------------------------
[ -n "${SKIP_IDLE:-}" ] && exit 0
start_cluster "many" "$MANY"
STARTED=$(wait_led)
SETTLED=$(wait_settled)
sleep 10
declare -a T0
for i in 1 2 3; do T0[$i]=$(cpu_ticks "${NODE_PIDS[$i]}"); done
sleep 20
cpu=()
for i in 1 2 3; do
  t1=$(cpu_ticks "${NODE_PIDS[$i]}")
  cpu+=("$(python3 -c "print(f'{100 * ($t1 - ${T0[$i]}) / $TICKS / 20:.1f}')")")
done
stop_cluster
for i in 1 2 3; do
  # shellcheck disable=SC2086
  "$KVSTORE" ${NODE_ARGS[$i]} 2>>"$BENCH_TMP/many-$i.log" &
  NODE_PIDS[$i]=$!
  BENCH_PIDS+=("$!")
done
for i in 1 2 3; do wait_for_port "${CLIENT_PORT[$i]}"; done
RESTARTED=$(wait_led)
stop_cluster
echo
echo "$MANY partitions x 3 replicas on 3 nodes ($((MANY + 1)) groups per node): every group led" \
  "$STARTED s after start (leaders balanced $SETTLED s later), $RESTARTED s after a restart of" \
  "all three; idle CPU per node ${cpu[*]} % of one core (20 s, once settled)"
