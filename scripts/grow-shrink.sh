#!/usr/bin/env bash
# Watch a partitioned cluster grow from 3 to 5 nodes and shrink back to 3 under load, with
# several keyspaces, nothing acknowledged lost. Run it, open the cluster page it prints, and
# watch the replicas and leaders follow each step.
#
#   scripts/grow-shrink.sh          (about two minutes; Ctrl-C stops everything)
#
# 1. Three nodes found the cluster (`default` in 64 partitions); keyspaces `logs` (16
#    partitions) and `users` (8) are created.
# 2. Two `kvstore load` runs write into `default` and `logs` all along (8 writers each).
# 3. Node 4 joins (`--join`), then node 5: the placement moves replicas and leaders onto them.
# 4. Node 4, then node 5, is drained and removed: everything moves back onto nodes 1 to 3.
# 5. The loads stop and read every acknowledged write back.
# After each step it waits for the placement to settle and prints `kvstore cluster status`.
# Nodes listen on 127.0.0.1: node N on binary 7N01 (7101...7501), Redis 7N02, HTTP 7N03
# (the cluster page: http://127.0.0.1:7103/), peers 7N04; data in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kvstore
K=$PWD/target/release/kvstore
WORK=$(mktemp -d /tmp/kvstore-grow-shrink.XXXXXX)
PIDS=()
LOADS=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${LOADS[@]}" "${PIDS[@]}" 2>/dev/null || true
  wait "${LOADS[@]}" "${PIDS[@]}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop INT TERM EXIT

port() { echo "7${1}0${2}"; } # port NODE KIND (1 binary, 2 Redis, 3 HTTP, 4 peers)
PEERS="1=127.0.0.1:$(port 1 4),2=127.0.0.1:$(port 2 4),3=127.0.0.1:$(port 3 4)"
ADDRS="127.0.0.1:$(port 1 1),127.0.0.1:$(port 2 1),127.0.0.1:$(port 3 1)"

start_node() { # start_node ID ARGS...: starts node ID with its ports and the given arguments
  local id=$1
  shift
  "$K" serve --data-dir "$WORK/node-$id" --node-id "$id" --listen "127.0.0.1:$(port "$id" 1)" \
    --resp-listen "127.0.0.1:$(port "$id" 2)" --http-listen "127.0.0.1:$(port "$id" 3)" \
    --peer-listen "127.0.0.1:$(port "$id" 4)" --idle-spin-us 0 "$@" 2>"$WORK/node-$id.log" &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$(port "$id" 1)") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node $id did not start; its log:" >&2
  cat "$WORK/node-$id.log" >&2
  return 1
}

settle() { # waits until every group has a leader and the map is not rebalancing
  local t0=$SECONDS
  for _ in $(seq 1 600); do
    if "$K" cluster --addr "$ADDRS" status --json 2>/dev/null | python3 -c 'import json,sys
o = json.load(sys.stdin)
sys.exit(0 if not o["leaderless"] and all(n["reachable"] for n in o["nodes"] if n["state"] != "removed") else 1)' &&
      "$K" cluster --addr "$ADDRS" map 2>/dev/null |
      python3 -c 'import json,sys; sys.exit(1 if json.load(sys.stdin)["rebalancing"] else 0)'; then
      echo "(settled in $((SECONDS - t0)) s)"
      return 0
    fi
    sleep 0.5
  done
  echo "the placement did not settle in 5 minutes" >&2
  return 1
}

step() { # step TITLE: prints a heading
  echo
  echo "=== $* ==="
}

status() {
  settle
  "$K" cluster --addr "$ADDRS" status
}

step "three nodes found the cluster"
for i in 1 2 3; do start_node "$i" --peers "$PEERS"; done
settle
"$K" keyspace --addr "$ADDRS" create logs --partitions 16 --replicas 3 | sed -n 1p
"$K" keyspace --addr "$ADDRS" create users --partitions 8 --replicas 3 | sed -n 1p
"$K" keyspace --addr "$ADDRS" list
echo "the cluster page: http://127.0.0.1:$(port 1 3)/"
status

step "writers start: 8 into default, 8 into logs (progress in $WORK/load-*.log)"
for ks in default logs; do
  "$K" load --addr "$ADDRS" --keyspace "$ks" --clients 8 >"$WORK/load-$ks.out" 2>"$WORK/load-$ks.log" &
  LOADS+=("$!")
done
sleep 3
tail -n 1 "$WORK/load-default.log"

for id in 4 5; do
  step "node $id joins"
  start_node "$id" --join "127.0.0.1:$(port 1 4)"
  ADDRS="$ADDRS,127.0.0.1:$(port "$id" 1)"
  sleep 2
  status
  tail -n 1 "$WORK/load-default.log" "$WORK/load-logs.log"
done

for id in 4 5; do
  step "node $id is drained, then removed"
  "$K" cluster --addr "$ADDRS" drain "$id"
  status
  "$K" cluster --addr "$ADDRS" remove-node "$id"
  tail -n 1 "$WORK/load-default.log" "$WORK/load-logs.log"
done

step "the writers stop and read every acknowledged write back"
kill -INT "${LOADS[@]}"
failed=0
for i in "${!LOADS[@]}"; do
  wait "${LOADS[$i]}" || failed=1
done
LOADS=()
for ks in default logs; do
  echo "$ks: $(tr '\n' ' ' <"$WORK/load-$ks.out")"
done
status
exit "$failed"
