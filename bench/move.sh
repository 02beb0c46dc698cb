#!/usr/bin/env bash
# A partition move under load: how long a replica holding MB megabytes takes to move to
# another node, and what the writers of that partition see meanwhile.
#
#   bench/move.sh [MB]          (default 100)
#
# Four nodes (three founding with `default` in one partition, a fourth joined with --join),
# fsync always. A keyspace `big` of one partition and 3 replicas is filled with MB of 4 KiB
# values (`kvbench fill`, 32 writers). Then 32 clients write 256-byte values into `big`
# (`kvbench kvcluster ... put 32`, one request in flight each) for WRITE_SECONDS (default
# 40): the first BASELINE seconds (default 8) without a move, then a follower replica's node
# is drained, so its replica of `big` moves to the node that lacks one: a learner is added,
# the snapshot streams to it in chunks, then the log, it is promoted and the old replica
# removed. Prints the move's duration from the drain until the map shows it done, the rate
# (MB / duration), and the writers' ops/s, p50 and p99 over the baseline window and over the
# window that held the move, and each node's peak resident memory. The issue's goal is at
# least 50 MB/s.
source "$(dirname "$0")/lib.sh"

MB="${1:-100}"
WRITE_SECONDS="${WRITE_SECONDS:-40}"
BASELINE="${BASELINE:-8}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
build_kvstore_and_kvbench

map_json() { "$KVSTORE" cluster --addr "$ADDRS" map 2>/dev/null; }

# big_replicas: the voters of `big`'s group, its learners, its leader and the voters a move in
# flight wants, as "VOTERS LEARNERS LEADER WANT" ("-": none).
big_replicas() {
  map_json | python3 -c 'import json,sys
m = json.load(sys.stdin)
g = [g for g in m["groups"] if g["keyspace"] == "big"][0]
print(",".join(map(str, g["replicas"])), ",".join(map(str, g["learners"])) or "-",
      g["leader"] or 0, ",".join(map(str, g["want"])) or "-")'
}

echo "starting 3 nodes, then a fourth with --join..." >&2
start_cluster move 1
wait_led >/dev/null
P4=$(free_port) C4=$(free_port)
"$KVSTORE" serve --data-dir "$BENCH_TMP/move-4" --fsync always --node-id 4 --join "$PEER1" \
  --peer-listen "127.0.0.1:$P4" --listen "127.0.0.1:$C4" --resp-listen "127.0.0.1:$(free_port)" \
  --http-listen "127.0.0.1:$(free_port)" --idle-spin-us 0 2>"$BENCH_TMP/move-4.log" &
NODE4=$!
BENCH_PIDS+=("$!")
wait_for_port "$C4"
ADDRS="$ADDRS,127.0.0.1:$C4"
for _ in $(seq 1 120); do
  map_json | python3 -c 'import json,sys; sys.exit(4 not in [n["id"] for n in json.load(sys.stdin)["nodes"]])' &&
    break
  sleep 0.5
done
wait_settled >/dev/null

"$KVSTORE" keyspace --addr "$ADDRS" create big --partitions 1 --replicas 3 >/dev/null
wait_led >/dev/null
echo "filling big with $MB MB..." >&2
FILL=$(KVBENCH_KEYSPACE=big "$KVBENCH" fill "$ADDRS" "$MB" 2>/dev/null)
read -r VOTERS _ LEADER _ <<<"$(big_replicas)"
# Drain a follower of `big` (so the move is a replica move, not a leadership hand-over).
DRAIN=$(python3 -c "v=[int(x) for x in '$VOTERS'.split(',')]; print([n for n in v if n != $LEADER][0])")
echo "big: replicas $VOTERS, leader $LEADER; draining node $DRAIN in $BASELINE s" >&2

KVBENCH_KEYSPACE=big "$KVBENCH" kvcluster "$ADDRS" put 32 "$BASELINE" >"$BENCH_TMP/baseline.json"
KVBENCH_KEYSPACE=big "$KVBENCH" kvcluster "$ADDRS" put 32 "$((WRITE_SECONDS - BASELINE))" \
  >"$BENCH_TMP/during.json" &
WRITERS=$!
BENCH_PIDS+=("$WRITERS")
sleep 1
# One process polls the map until the move is done (a bash loop starting a Python per poll
# took up to half a second a poll on the loaded box, all of it counted in the move). It
# prints the seconds from the drain until the first poll that saw the move done, the seconds
# until the last poll that did not (the move ended between the two), and the replicas.
MOVED=$(python3 - "$KVSTORE" "$ADDRS" "$DRAIN" <<'PY'
import json, subprocess, sys, time
kvstore, addrs, drain = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.time()
subprocess.run([kvstore, "cluster", "--addr", addrs, "drain", str(drain)],
               check=True, stdout=subprocess.DEVNULL)
before = 0.0
for _ in range(3000):
    start = time.time() - t0
    out = subprocess.run([kvstore, "cluster", "--addr", addrs, "map"],
                         capture_output=True, text=True).stdout
    try:
        g = [g for g in json.loads(out)["groups"] if g["keyspace"] == "big"][0]
    except (ValueError, IndexError, KeyError):
        continue
    if drain not in g["replicas"] and not g["learners"] and not g["want"]:
        print(f"{time.time() - t0:.2f} {before:.2f} {','.join(map(str, g['replicas']))}")
        break
    before = start
    time.sleep(0.01)
else:
    print("timeout - -")
PY
)
read -r MOVED MOVED_AFTER VOTERS <<<"$MOVED"
wait "$WRITERS"
echo "big after the move: replicas $VOTERS" >&2
# Peak resident memory of each node (VmHWM): a node holding or receiving a snapshot whole in
# memory shows it here.
PEAKS=""
for pid in "${NODE_PIDS[@]}" "$NODE4"; do
  PEAKS="$PEAKS $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")"
done
# KEEP_LOGS=DIR keeps the nodes' logs (the temporary directory goes at exit).
[ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$BENCH_TMP"/move-*.log "$KEEP_LOGS"/

echo
echo "kvstore $(git -C "$ROOT" rev-parse --short HEAD), 4 nodes; $(nproc) cores; fsync always;" \
  "$(date -u +%F)"
python3 - "$MB" "$MOVED" "$MOVED_AFTER" "$FILL" "$BENCH_TMP/baseline.json" "$BENCH_TMP/during.json" "$PEAKS" <<'PY'
import json, sys
mb, moved, after, fill = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
base, during = (json.load(open(p)) for p in sys.argv[5:7])
peaks = sys.argv[7].split()
print(f"filled {fill['bytes'] / 1048576:.0f} MB into one partition at {fill['mb_per_s']:.1f} MB/s")
if moved == "timeout":
    print("the move did not finish within 120 s")
else:
    print(f"move of a {mb} MB partition under 32 writers: {float(moved):.1f} s, "
          f"{mb / float(moved):.1f} MB/s (goal >= 50 MB/s); the last poll that saw it under "
          f"way was at {float(after):.1f} s")
print(f"peak resident memory per node (MB): {', '.join(f'node {i + 1}: {p}' for i, p in enumerate(peaks))}")
print()
print("| writers (32, 256-byte puts into the moving partition) | ops/s | p50 ms | p99 ms | errors |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, r in (("before the move", base), ("window holding the move", during)):
    print(f"| {name} | {r['ops_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
PY
