# Shared helpers for the bench/ scripts: installing peers, free ports, waiting, cleanup.
# Sourced, not run. Every process a script starts is recorded and killed by PID on exit.

set -euo pipefail

BENCH_PIDS=()
BENCH_TMP=$(mktemp -d /tmp/kvstore-bench.XXXXXX)

bench_cleanup() {
  for pid in "${BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT INT TERM

# apt_install PKG...: installs Debian packages that are missing (idempotent).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get install -y "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y "${missing[@]}" >/dev/null
  }
}

# free_port: a free loopback port below the kernel's ephemeral range (as the test harness picks
# them): a port from that range, free now, can be handed to any outgoing connection (a
# client's, a node's to its peers) before the server meant to listen on it binds it. A port
# is handed out once per script ($BENCH_TMP/ports lists them): a cluster's dozen ports are
# picked before any node binds one, so "free now" alone could name one port twice.
free_port() {
  python3 - "$BENCH_TMP/ports" <<'PY'
import os, random, socket, sys
used_path = sys.argv[1]
used = set(open(used_path).read().split()) if os.path.exists(used_path) else set()
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    port = random.randrange(10000, max(low, 10001))
    if str(port) in used:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    with open(used_path, "a") as f:
        f.write(f"{port}\n")
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}

# node_counts: the cluster's WAL fsyncs, Raft messages sent (both from every node's /metrics,
# HTTP_PORT) and context switches of its nodes' threads (from /proc), so far, on one line.
# Counts per operation, unlike rates, do not move when the machine's other tenants do.
node_counts() {
  local i syncs=0 msgs=0 switches=0 m
  for i in 1 2 3; do
    m=$(curl -sf "127.0.0.1:${HTTP_PORT[$i]}/metrics" || true)
    syncs=$((syncs + $(awk '/^kvstore_raft_wal_syncs_total/ {v = $2} END {print v + 0}' <<<"$m")))
    msgs=$((msgs + $(awk '/^kvstore_raft_messages_total\{outcome="sent"\}/ {v = $2} END {print v + 0}' <<<"$m")))
    switches=$((switches + $(cat /proc/"${NODE_PIDS[$i]}"/task/*/status 2>/dev/null |
      awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
  done
  echo "$syncs $msgs $switches"
}

# cpu_ticks PID...: the user + system CPU ticks (getconf CLK_TCK a second) the processes have
# used so far, summed.
cpu_ticks() {
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$t"
}

# wait_for_port PORT: waits (up to 20 s) until something accepts on 127.0.0.1:PORT.
wait_for_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on port $1 after 20 s" >&2
  return 1
}

# median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# build_kvstore_and_kvbench: release builds of both (needs ROOT); sets KVSTORE and KVBENCH.
build_kvstore_and_kvbench() {
  # kvbench links etcd-client (for etcd-compare.sh), whose build needs protoc.
  apt_install protobuf-compiler
  echo "building kvstore and kvbench (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p kvstore)
  (cd "$ROOT/bench/kvbench" && cargo build --release -q)
  KVSTORE="$ROOT/target/release/kvstore"
  KVBENCH="$ROOT/bench/kvbench/target/release/kvbench"
}

# --- a 3-node kvstore cluster (needs KVSTORE, the release binary) ------------------------------

# start_cluster NAME PARTITIONS: starts 3 founding nodes (fsync always, `default` in PARTITIONS
# partitions); sets ADDRS, PEER1, NODE_PIDS, NODE_ARGS (to restart one), CLIENT_PORT,
# RESP_PORT and HTTP_PORT (per node). Logs go to $BENCH_TMP/NAME-N.log.
start_cluster() {
  local name=$1 partitions=$2 peers="" i
  declare -g -a PEER_PORT CLIENT_PORT RESP_PORT HTTP_PORT NODE_PIDS=() NODE_ARGS=()
  for i in 1 2 3; do
    PEER_PORT[$i]=$(free_port)
    peers="${peers:+$peers,}$i=127.0.0.1:${PEER_PORT[$i]}"
  done
  ADDRS=""
  for i in 1 2 3; do
    CLIENT_PORT[$i]=$(free_port)
    RESP_PORT[$i]=$(free_port)
    HTTP_PORT[$i]=$(free_port)
    NODE_ARGS[$i]="serve --data-dir $BENCH_TMP/$name-$i --fsync always --node-id $i --peers $peers \
      --peer-listen 127.0.0.1:${PEER_PORT[$i]} --listen 127.0.0.1:${CLIENT_PORT[$i]} \
      --resp-listen 127.0.0.1:${RESP_PORT[$i]} --http-listen 127.0.0.1:${HTTP_PORT[$i]} \
      --default-partitions $partitions --idle-spin-us 0"
    # shellcheck disable=SC2086
    "$KVSTORE" ${NODE_ARGS[$i]} 2>"$BENCH_TMP/$name-$i.log" &
    NODE_PIDS[$i]=$!
    BENCH_PIDS+=("$!")
    ADDRS="${ADDRS:+$ADDRS,}127.0.0.1:${CLIENT_PORT[$i]}"
  done
  PEER1="127.0.0.1:${PEER_PORT[1]}"
  for i in 1 2 3; do wait_for_port "${CLIENT_PORT[$i]}"; done
}

stop_cluster() {
  local pid
  for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# wait_led: waits until every group of the cluster at $ADDRS reports a leader; prints seconds.
wait_led() {
  local t0 out
  t0=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    # (The status of a thousand groups is too long for a command line: it goes by stdin.)
    if "$KVSTORE" cluster --addr "$ADDRS" status --json 2>/dev/null | python3 -c 'import json,sys
try:
    o = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
sys.exit(0 if not o["leaderless"] and all(n["reachable"] for n in o["nodes"]) else 1)'; then
      python3 -c "import time; print(f'{time.time() - $t0:.1f}')"
      return 0
    fi
    sleep 0.5
  done
  echo "timeout"
}

# wait_settled: waits until the map is not rebalancing; prints seconds.
wait_settled() {
  local t0
  t0=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    if "$KVSTORE" cluster --addr "$ADDRS" map 2>/dev/null | python3 -c 'import json,sys
try:
    m = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
sys.exit(0 if not m["rebalancing"] else 1)'; then
      python3 -c "import time; print(f'{time.time() - $t0:.1f}')"
      return 0
    fi
    sleep 0.5
  done
  echo "timeout"
}

# syslog_lines SRC OUT: SRC's lines as RFC 3164 messages ("<13>TIME bench-host SRC-NAME: runid
# LINE"), one per line in OUT, for loggen's --read-file: real lines instead of its padding.
syslog_lines() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys, time
src, out = sys.argv[1], sys.argv[2]
app = "".join(c if c.isalnum() else "-" for c in os.path.basename(src))[:32] or "app"
stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
with open(src, errors="replace") as f, open(out, "w") as o:
    for line in f:
        line = line.rstrip("\r\n")
        if line:
            o.write(f"<13>{stamp} bench-host {app}: runid {line}\n")
PY
}
