#!/usr/bin/env bash
# The log aggregator's syslog ingest, measured against syslog-ng on the same machine in one run.
#
#   bench/logs.sh                        (200,000 messages each, loggen at full speed, 1 connection)
#   MESSAGES=500000 CONNS=2 bench/logs.sh
#   RATE=50000 bench/logs.sh             (the same rate target, messages/s, for both)
#   LINES_FROM=/var/log/dpkg.log bench/logs.sh   (real lines instead of loggen's padding)
#   LATENCY_N=500 bench/logs.sh          (probes of the end-to-end latency; default 200)
#   AGGREGATOR_ARGS="--pushes-in-flight 128" bench/logs.sh   (more `serve` flags)
#
# 1. Ingest throughput. syslog-ng's `loggen` sends MESSAGES messages of SIZE bytes (default
#    200; legacy "<PRI>TIMESTAMP HOST PROG[PID]: MSG" lines, LF framing) over CONNS TCP
#    connections at RATE messages/s in total (0 = as fast as it can) to
#    (a) syslog-ng 3.38 as a central aggregator writing one file, flags(flow-control) (the
#        file is written, not fsynced: syslog-ng's usual setup), and
#    (b) `log-aggregator serve` in front of a 3-node kvstore cluster (fsync always, every
#        record replicated to 3 nodes) that also indexes every line with tantivy.
#    Counted as messages *stored*: for syslog-ng, lines in its output file; for the aggregator,
#    `logs_ingested_lines_total{via="syslog_tcp"}` in its /metrics (lines the store has
#    acknowledged). With LINES_FROM=FILE, loggen sends FILE's lines instead (each as an RFC
#    3164 message "<13>TIME bench-host FILE-NAME: runid LINE", the file read in a loop):
#    loggen's own messages are mostly padding, which compresses far better than real logs
#    (the aggregator stores its chunks compressed). The rate is MESSAGES over the time from loggen's start to the moment the
#    count reaches MESSAGES (polled every few ms). The two run one after the other, never at
#    once (they would share the cores); the store is started only after syslog-ng has stopped.
#    Also printed: loggen's own figure (its clock ticks in half seconds, so it is coarse for
#    short runs; with the aggregator it says when the last message was read), how long until
#    every line was searchable (`logs_index_lines`), and a check that a search finds them all.
#    Goal: aggregator/syslog-ng at least 1.0 while replicating and indexing.
# 2. End-to-end latency: LATENCY_N messages sent one at a time with `logger --tcp` (LF
#    framing, a new connection each), each carrying a unique word and sent after a random
#    pause of 0 to 250 ms (so the probes do not fall in step with the aggregator's 200 ms
#    journal poll, which would make every probe wait a whole poll); the time from starting
#    `logger` until `GET /api/query?q=WORD&from=now-1h` answers total 1 (polled every 5 ms);
#    p50 and p99 (nearest rank), and max.
# 3. Query latency: `log-aggregator bench-query` loads QUERY_LINES (default 10 million) more
#    generated lines into the same aggregator over HTTP (NDJSON pushes of 5,000 lines, 4 in
#    flight, spread over the last hour, 8 services on 4 hosts), waits until all are
#    searchable, then times QUERY_ROUNDS runs of each kind of search (a common word, a rare
#    word, a phrase, a word in one service, a level, the newest 10 of a word): p50, p99,
#    max, and the lines each finds; and the aggregator's resident memory after.
# 4. Restart: the aggregator stopped (SIGTERM) and started again over everything stored,
#    the time until it is ready: with its index on disk (the default here, as scripts/run.sh
#    runs it: it opens the index and reads the journal since its checkpoint), then without
#    (in memory: every line read from the store and indexed again). INDEX_ON_DISK=0 runs
#    every phase with the index in memory.
#
# Installs its peers itself, idempotently: syslog-ng-core's .deb (syslog-ng and loggen) is
# unpacked under SYSLOG_NG_DIR (default /opt/syslog-ng) without being installed, because
# Debian's rsyslog and syslog-ng-core conflict (and so that no system log daemon is started);
# its shared libraries are installed with apt. Builds kvstore and log-aggregator in release
# mode. Everything listens on loopback ports chosen at run time; every process started is
# stopped by PID on exit.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

MESSAGES="${MESSAGES:-200000}"
RATE="${RATE:-0}"
CONNS="${CONNS:-1}"
SIZE="${SIZE:-200}"
LATENCY_N="${LATENCY_N:-200}"
# Partitions of the aggregator's `logs` keyspace (and of the cluster's `default`).
PARTITIONS="${PARTITIONS:-64}"
# Seconds a throughput run may take before it is reported as incomplete.
TIMEOUT="${TIMEOUT:-600}"
SNG_DIR="${SYSLOG_NG_DIR:-/opt/syslog-ng}"
# Lines loaded for the query benchmark (0: skip it), and how often each search is timed.
QUERY_LINES="${QUERY_LINES:-10000000}"
QUERY_ROUNDS="${QUERY_ROUNDS:-50}"

# --- the peers: syslog-ng and loggen, unpacked from Debian's syslog-ng-core -------------------

install_syslog_ng() {
  if [ -x "$SNG_DIR/usr/sbin/syslog-ng" ] && [ -x "$SNG_DIR/usr/bin/loggen" ]; then return 0; fi
  apt_install libivykis0 libnet1 libjson-c5 libpcre3 libwrap0 libglib2.0-0 libcap2 libssl3
  local sudo="" deb
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  deb=$(mktemp -d /tmp/syslog-ng-deb.XXXXXX)
  chmod 755 "$deb" # apt's _apt user writes the download
  echo "unpacking syslog-ng-core into $SNG_DIR (apt-get download)" >&2
  (cd "$deb" && apt-get download syslog-ng-core >/dev/null 2>&1) || {
    $sudo apt-get update >/dev/null
    (cd "$deb" && apt-get download syslog-ng-core >/dev/null 2>&1)
  }
  $sudo mkdir -p "$SNG_DIR"
  $sudo dpkg-deb -x "$deb"/syslog-ng-core_*.deb "$SNG_DIR"
  rm -rf "$deb"
}

sng_env() { # sng_env CMD...: runs CMD with the unpacked copy's libraries and plugins
  LD_LIBRARY_PATH="$SNG_DIR/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$SNG_DIR/usr" "$@"
}
SYSLOG_NG="$SNG_DIR/usr/sbin/syslog-ng"
LOGGEN="$SNG_DIR/usr/bin/loggen"

# start_syslog_ng PORT OUTFILE: syslog-ng as a central aggregator on 127.0.0.1:PORT (TCP, LF
# framing, RFC 3164 or 5424), every message appended to OUTFILE, flow control on. Sets SNG_PID.
start_syslog_ng() {
  local port=$1 out=$2 dir="$BENCH_TMP/syslog-ng"
  mkdir -p "$dir"
  cat >"$dir/syslog-ng.conf" <<EOF
@version: 3.38
options {
  threaded(yes); use-dns(no); use-fqdn(no); keep-hostname(yes); chain-hostnames(no);
  stats-freq(0); frac-digits(6); log-fifo-size(100000); flush-lines(1000); time-reopen(2);
};
source s_tcp {
  network(ip("127.0.0.1") port($port) transport("tcp") max-connections(200)
          log-iw-size(200000) log-fetch-limit(1000) keep-alive(yes) flags(no-parse));
};
destination d_file {
  file("$out" template("\${ISODATE} \${HOST} \${PROGRAM}[\${PID}]: \${MSG}\n"));
};
# network() in 3.38 does not tell RFC 5424 from RFC 3164 by itself: read raw, then pick the parser.
log {
  source(s_tcp);
  if (message("^<[0-9]{1,3}>1 ")) { parser { syslog-parser(flags(syslog-protocol)); }; }
  else { parser { syslog-parser(); }; };
  destination(d_file); flags(flow-control);
};
EOF
  # -F: no fork, and no function or subshell around it, so $! is syslog-ng itself.
  LD_LIBRARY_PATH="$SNG_DIR/usr/lib/syslog-ng" "$SYSLOG_NG" --module-path="$SNG_DIR/usr/lib/syslog-ng/3.38" -F --no-caps \
    -f "$dir/syslog-ng.conf" -p "$dir/syslog-ng.pid" -R "$dir/syslog-ng.persist" \
    -c "$dir/syslog-ng.ctl" >"$dir/syslog-ng.log" 2>&1 &
  SNG_PID=$!
  BENCH_PIDS+=("$SNG_PID")
  wait_for_port "$port"
  [ "$(cat "$dir/syslog-ng.pid")" = "$SNG_PID" ] || { echo "syslog-ng forked: its PID is not \$!" >&2; exit 1; }
}

# The race: starts loggen (its arguments after `--`) and polls the count of messages stored
# until it reaches MESSAGES; prints one JSON line. Killed (SIGTERM), it stops loggen first.
cat >"$BENCH_TMP/race.py" <<'PY'
import http.client, json, os, signal, subprocess, sys, time

args = sys.argv[1:]
sep = args.index("--")
opts, cmd = dict(zip(args[:sep:2], args[1:sep:2])), args[sep + 1:]
n, timeout = int(opts["--count"]), float(opts["--timeout"])
child = None

def stop(*_):
    if child and child.poll() is None:
        child.kill()
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)

if "--file" in opts:
    path, offset, lines = opts["--file"], 0, 0
    def counts():
        global offset, lines
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return lines, 0
        offset += len(data)
        lines += data.count(b"\n")
        return lines, 0
    pause = 0.002
else:
    host, port = opts["--metrics"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    def counts():
        global conn
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            return -1, -1
        stored = indexed = 0
        for line in text.splitlines():
            if line.startswith('logs_ingested_lines_total{via="syslog_tcp"} '):
                stored = int(line.split()[-1])
            elif line.startswith("logs_index_lines "):
                indexed = int(line.split()[-1])
        return stored, indexed
    pause = 0.005

out = open(opts["--loggen-out"], "wb")
t0 = time.time()
child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
stored_at = indexed_at = sent_at = None
stored = indexed = 0
while time.time() - t0 < timeout:
    s, i = counts()
    now = time.time()
    stored, indexed = max(stored, s), max(indexed, i)
    if sent_at is None and child.poll() is not None:
        sent_at = now
    if stored_at is None and stored >= n:
        stored_at = now
        if "--file" in opts:
            break
    if stored_at is not None and indexed_at is None and indexed >= n:
        indexed_at = now
    if stored_at is not None and indexed_at is not None:
        break
    time.sleep(pause)
try:
    child.wait(timeout=30)
except subprocess.TimeoutExpired:
    child.kill()
if sent_at is None:
    sent_at = time.time()
out.close()
summary = open(opts["--loggen-out"], errors="replace").read().strip().splitlines()
print(json.dumps({
    "messages": n, "stored": stored, "indexed": indexed,
    "stored_s": stored_at and stored_at - t0, "indexed_s": indexed_at and indexed_at - t0,
    "sent_s": sent_at - t0, "loggen_rc": child.returncode,
    "loggen": summary[-1] if summary else "",
}))
PY

# race KIND TARGET PORT: loggen to 127.0.0.1:PORT; KIND is --file (TARGET: the output file) or
# --metrics (TARGET: HOST:PORT of the aggregator's HTTP). Prints the JSON line.
race() {
  local per_conn_rate per_conn_count
  if [ "$RATE" -eq 0 ]; then per_conn_rate=100000000; else per_conn_rate=$(((RATE + CONNS - 1) / CONNS)); fi
  per_conn_count=$((MESSAGES / CONNS))
  # loggen's --interval also ends its run: leave it room.
  /usr/bin/python3 "$BENCH_TMP/race.py" --count "$((per_conn_count * CONNS))" \
    --timeout "$TIMEOUT" "$1" "$2" --loggen-out "$BENCH_TMP/loggen-$4.out" -- \
    env LD_LIBRARY_PATH="$SNG_DIR/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$SNG_DIR/usr" \
    "$LOGGEN" --inet --stream --rate "$per_conn_rate" --number "$per_conn_count" \
    --interval 3600 "${PAYLOAD_ARGS[@]}" --active-connections "$CONNS" 127.0.0.1 "$3" &
  RACE_PID=$!
  BENCH_PIDS+=("$RACE_PID")
  wait "$RACE_PID"
}

# What loggen sends: its own padded messages of SIZE bytes, or LINES_FROM's lines as syslog.
PAYLOAD_ARGS=(--size "$SIZE")
if [ -n "${LINES_FROM:-}" ]; then
  [ -s "$LINES_FROM" ] || { echo "LINES_FROM=$LINES_FROM: no such file, or empty" >&2; exit 1; }
  syslog_lines "$LINES_FROM" "$BENCH_TMP/lines.txt"
  PAYLOAD_ARGS=(--read-file "$BENCH_TMP/lines.txt" --loop-reading --dont-parse)
fi

# --- build, install ---------------------------------------------------------------------------

install_syslog_ng
echo "building kvstore and log-aggregator (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore -p log-aggregator)
KVSTORE="$ROOT/target/release/kvstore"
LOGAGG="$ROOT/target/release/log-aggregator"
[ "$((MESSAGES % CONNS))" -eq 0 ] || {
  MESSAGES=$((MESSAGES / CONNS * CONNS))
  echo "MESSAGES rounded down to $MESSAGES (a multiple of CONNS)" >&2
}

echo
echo "log-aggregator $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo '+changes')" \
  "vs $(sng_env "$SYSLOG_NG" --version 2>/dev/null | head -1 | tr -d '\n')"
echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "loggen: $MESSAGES messages of $([ -n "${LINES_FROM:-}" ] && echo "$LINES_FROM's lines ($(wc -l <"$BENCH_TMP/lines.txt") in a loop, $(($(wc -c <"$BENCH_TMP/lines.txt") / $(wc -l <"$BENCH_TMP/lines.txt"))) bytes on average)" || echo "$SIZE bytes"), TCP, LF framing, $CONNS connection(s)," \
  "rate $([ "$RATE" -eq 0 ] && echo 'as fast as possible' || echo "$RATE msg/s")"

# --- 1a. syslog-ng ------------------------------------------------------------------------------

SNG_PORT=$(free_port)
SNG_OUT="$BENCH_TMP/syslog-ng/all.log"
start_syslog_ng "$SNG_PORT" "$SNG_OUT"
race --file "$SNG_OUT" "$SNG_PORT" syslog-ng >"$BENCH_TMP/sng.json"
kill "$SNG_PID"
wait "$SNG_PID" 2>/dev/null || true
rm -f "$SNG_OUT"

# --- 1b. the aggregator -------------------------------------------------------------------------

start_cluster logs "$PARTITIONS"
wait_led >/dev/null
wait_settled >/dev/null
HTTP_PORT=$(free_port)
SYSLOG_PORT=$(free_port)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The index on disk, as scripts/run.sh runs it (INDEX_ON_DISK=0: in memory).
INDEX_ARGS=()
[ "${INDEX_ON_DISK:-1}" = 1 ] && INDEX_ARGS=(--index-dir "$BENCH_TMP/aggregator-index")
# start_aggregator [ARGS...]: starts the aggregator and waits until it is ready (up to
# READY_TIMEOUT seconds, default 120); sets AGG_PID and READY_S (seconds to ready).
start_aggregator() {
  local t0
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # AGGREGATOR_ARGS is a list of flags
  "$LOGAGG" serve --store "$ADDRS" --http "127.0.0.1:$HTTP_PORT" \
    --syslog-tcp "127.0.0.1:$SYSLOG_PORT" --syslog-udp "127.0.0.1:$SYSLOG_PORT" \
    --ingest-token "$TOKEN" --partitions "$PARTITIONS" --name bench-aggregator "$@" \
    ${AGGREGATOR_ARGS:-} \
    2>>"$BENCH_TMP/aggregator.log" &
  AGG_PID=$!
  BENCH_PIDS+=("$AGG_PID")
  for _ in $(seq 1 $((${READY_TIMEOUT:-120} * 50))); do
    curl -sf "127.0.0.1:$HTTP_PORT/health" >/dev/null && break
    kill -0 "$AGG_PID" 2>/dev/null || { echo "the aggregator exited:" >&2; tail "$BENCH_TMP/aggregator.log" >&2; exit 1; }
    sleep 0.02
  done
  curl -sf "127.0.0.1:$HTTP_PORT/health" >/dev/null || { echo "the aggregator is not ready in time" >&2; exit 1; }
  READY_S=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
}
start_aggregator "${INDEX_ARGS[@]}"
# A keyspace the aggregator just created must have its leaders before the clock starts.
wait_led >/dev/null
race --metrics "127.0.0.1:$HTTP_PORT" "$SYSLOG_PORT" aggregator >"$BENCH_TMP/agg.json"
# Every line searchable? The word "runid" is in every loggen message.
found=$(curl -s "127.0.0.1:$HTTP_PORT/api/query?q=runid&from=now-1h&limit=1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("total", "?"))' 2>/dev/null || echo "?")
metrics_after=$(curl -s "127.0.0.1:$HTTP_PORT/metrics")

echo
echo "--- 1. ingest throughput (messages stored / time from loggen's start) ---"
python3 - "$BENCH_TMP/sng.json" "$BENCH_TMP/agg.json" "$found" <<'PY'
import json, re, sys
sng, agg = (json.load(open(p)) for p in sys.argv[1:3])
found = sys.argv[3]
def rate(r):
    return r["messages"] / r["stored_s"] if r["stored_s"] else None
def loggen(r):
    m = re.search(r"average rate = ([0-9.]+) msg/sec", r["loggen"])
    return f"{float(m.group(1)):,.0f} msg/s" if m else "?"
print("%-34s %14s %10s %18s" % ("", "stored msgs/s", "seconds", "loggen's own rate"))
for name, r in [("syslog-ng (file, flow control)", sng),
                ("log-aggregator (3 replicas+index)", agg)]:
    if r["stored_s"]:
        print("%-34s %14s %10.2f %18s" % (name, f"{rate(r):,.0f}", r["stored_s"], loggen(r)))
    else:
        print("%-34s %14s %10s %18s  (only %d of %d stored)" % (name, "incomplete", "-", loggen(r), r["stored"], r["messages"]))
if rate(sng) and rate(agg):
    print("ratio log-aggregator / syslog-ng: %.2f (goal: at least 1.0)" % (rate(agg) / rate(sng)))
if agg["indexed_s"]:
    print("log-aggregator: all %d lines in the index %.2f s after loggen's start (%s lines/s); a search for a word of every line finds %s"
          % (agg["messages"], agg["indexed_s"], f"{agg['messages'] / agg['indexed_s']:,.0f}", found))
else:
    print("log-aggregator: %d of %d lines in the index at the end; a search finds %s" % (agg["indexed"], agg["messages"], found))
PY
errors=$(awk '/^logs_store_errors_total / {print $2}' <<<"$metrics_after")
[ "${errors:-0}" != 0 ] && echo "log-aggregator: $errors writes to the store failed (and were retried)"

# --- 2. end-to-end latency ----------------------------------------------------------------------

echo
echo "--- 2. end-to-end latency, logger --tcp to searchable ($LATENCY_N messages, one at a time) ---"
/usr/bin/python3 - "$HTTP_PORT" "$SYSLOG_PORT" "$LATENCY_N" <<'PY'
import http.client, json, math, os, random, subprocess, sys, time
http_port, syslog_port, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
def total(word):
    global conn
    try:
        conn.request("GET", f"/api/query?q={word}&from=now-1h&limit=1")
        return json.loads(conn.getresponse().read()).get("total", 0)
    except (OSError, http.client.HTTPException, ValueError):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        return 0
run = os.urandom(4).hex()
samples, missed = [], 0
for i in range(n):
    word = f"probe{run}x{i:05d}"
    # Not in step with the aggregator's journal poll (200 ms): a random pause first.
    time.sleep(random.uniform(0, 0.25))
    t0 = time.time()
    subprocess.run(["logger", "--tcp", "--server", "127.0.0.1", "--port", syslog_port,
                    "-t", "bench", f"latency probe {word} end"], check=True)
    while total(word) < 1:
        if time.time() - t0 > 30:
            missed += 1
            break
        time.sleep(0.005)
    else:
        samples.append(time.time() - t0)
samples.sort()
rank = lambda q: samples[max(0, math.ceil(q * len(samples)) - 1)] * 1000
if samples:
    print("p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d of %d searchable within 30 s)"
          % (rank(0.50), rank(0.99), samples[-1] * 1000, len(samples), n))
else:
    print("none of %d messages became searchable within 30 s" % n)
PY

echo
if [ "$QUERY_LINES" -gt 0 ]; then
  echo "--- 3. query latency over $QUERY_LINES more stored lines (loaded over HTTP, then searched) ---"
  "$LOGAGG" bench-query --http "127.0.0.1:$HTTP_PORT" --ingest-token "$TOKEN" \
    --lines "$QUERY_LINES" --rounds "$QUERY_ROUNDS" 2>"$BENCH_TMP/bench-query.log"
  echo "aggregator resident memory: $(( $(ps -o rss= -p "$AGG_PID") / 1024 )) MB"
fi

kill "$AGG_PID"
wait "$AGG_PID" 2>/dev/null || true
echo
echo "--- 4. restart: from SIGTERM's end until ready again, with everything above stored ---"
start_aggregator "${INDEX_ARGS[@]}"
where="in memory"
[ ${#INDEX_ARGS[@]} -gt 0 ] && where="on disk"
echo "index $where: ready in $READY_S s;" \
  "$(grep 'index up to date' "$BENCH_TMP/aggregator.log" | tail -1 | grep -oE 'from_store=[0-9]+ from_journal=[0-9]+')"
lines=$(curl -s "127.0.0.1:$HTTP_PORT/metrics" | awk '/^logs_index_lines /{print $2}')
kill "$AGG_PID"
wait "$AGG_PID" 2>/dev/null || true
if [ ${#INDEX_ARGS[@]} -gt 0 ]; then
  READY_TIMEOUT=3600 start_aggregator
  echo "index in memory (every line read from the store again): ready in $READY_S s;" \
    "$(grep 'index up to date' "$BENCH_TMP/aggregator.log" | tail -1 | grep -oE 'from_store=[0-9]+ from_journal=[0-9]+')"
  kill "$AGG_PID"
  wait "$AGG_PID" 2>/dev/null || true
fi
echo "lines indexed: $lines"
stop_cluster
problems=$(grep -cE ' (WARN|ERROR) ' "$BENCH_TMP/aggregator.log" || true)
if [ "$problems" -gt 0 ]; then
  echo
  echo "log-aggregator logged $problems warnings/errors; the first ones:"
  grep -E ' (WARN|ERROR) ' "$BENCH_TMP/aggregator.log" | head -5
fi
