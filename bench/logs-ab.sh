#!/usr/bin/env bash
# Two builds of the log ingest, A against B, in alternating runs on this machine: for a change
# whose gain is smaller than the noise of one bench/logs.sh run (syslog-ng's rate and ours each
# vary by a quarter from one run to the next here).
#
#   A=/tmp/old B=target/release bench/logs-ab.sh [ROUNDS]     (default 2 rounds: A B A B)
#   MESSAGES=1000000 (default) PARTITIONS=64 (default)
#   SETTLE=1: also wait until the placement has settled the new `logs` keyspace's leaders
#   LINES_FROM=/var/log/dpkg.log: loggen sends that file's lines (as bench/logs.sh does)
#
# A and B are directories holding release builds of `kvstore` and `log-aggregator` (copy
# target/release/{kvstore,log-aggregator} somewhere before the change). Each run: a fresh
# 3-node cluster (fsync always, `logs` in PARTITIONS partitions), one aggregator with its index
# on disk, syslog-ng's loggen sending MESSAGES messages of 200 bytes over one TCP connection
# at full speed; printed: the time from loggen's start until the aggregator's
# logs_ingested_lines_total{via="syslog_tcp"} (lines the store has acknowledged) reaches
# MESSAGES, that rate, and the CPU time the aggregator and the three nodes used meanwhile
# (user + system, from /proc: steadier than the rate when the machine is shared). bench/logs.sh installs loggen (run it once first).
source "$(dirname "$0")/lib.sh"
ROUNDS="${1:-2}"
MESSAGES="${MESSAGES:-1000000}"
PARTITIONS="${PARTITIONS:-64}"
SNG_DIR="${SYSLOG_NG_DIR:-/opt/syslog-ng}"
: "${A:?A=DIR of the first build}" "${B:?B=DIR of the second build}"
[ -x "$SNG_DIR/usr/bin/loggen" ] || { echo "no loggen under $SNG_DIR: run bench/logs.sh once" >&2; exit 1; }

PAYLOAD_ARGS=(--size 200)
if [ -n "${LINES_FROM:-}" ]; then
  [ -s "$LINES_FROM" ] || { echo "LINES_FROM=$LINES_FROM: no such file, or empty" >&2; exit 1; }
  syslog_lines "$LINES_FROM" "$BENCH_TMP/lines.txt"
  PAYLOAD_ARGS=(--read-file "$BENCH_TMP/lines.txt" --loop-reading --dont-parse)
fi

TICKS=$(getconf CLK_TCK)
# cpu_s PID...: user + system CPU seconds the processes have used so far.
cpu_s() { python3 -c "print($(cpu_ticks "$@") / $TICKS)"; }

run() { # run LABEL DIR: one measured run; prints "LABEL: N msgs in S s: R msgs/s"
  local label=$1
  shift
  KVSTORE="$1/kvstore"
  RUN=$((${RUN:-0} + 1))
  start_cluster "ab$RUN" "$PARTITIONS"
  wait_led >/dev/null
  wait_settled >/dev/null
  local http syslog agg lg t0 t1 n
  http=$(free_port)
  syslog=$(free_port)
  "$1/log-aggregator" serve --store "$ADDRS" --http "127.0.0.1:$http" \
    --syslog-tcp "127.0.0.1:$syslog" --ingest-token ab --partitions "$PARTITIONS" \
    --name ab --index-dir "$BENCH_TMP/ab$RUN-index" 2>>"$BENCH_TMP/ab-aggregator.log" &
  agg=$!
  BENCH_PIDS+=("$agg")
  for _ in $(seq 1 1000); do curl -sf "127.0.0.1:$http/health" >/dev/null && break; sleep 0.05; done
  wait_led >/dev/null
  [ -n "${SETTLE:-}" ] && echo "settled after $(wait_settled) s" >&2
  local c0 c1
  c0=$(cpu_s "$agg" "${NODE_PIDS[@]}")
  t0=$(date +%s.%N)
  env LD_LIBRARY_PATH="$SNG_DIR/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$SNG_DIR/usr" \
    "$SNG_DIR/usr/bin/loggen" --inet --stream --rate 100000000 --number "$MESSAGES" \
    --interval 3600 "${PAYLOAD_ARGS[@]}" --active-connections 1 127.0.0.1 "$syslog" >/dev/null 2>&1 &
  lg=$!
  BENCH_PIDS+=("$lg")
  for _ in $(seq 1 12000); do
    n=$(curl -s "127.0.0.1:$http/metrics" |
      awk '$1 == "logs_ingested_lines_total{via=\"syslog_tcp\"}" {print $2}' || true)
    [ "${n:-0}" -ge "$MESSAGES" ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  c1=$(cpu_s "$agg" "${NODE_PIDS[@]}")
  wait "$lg" 2>/dev/null || true
  kill "$agg" 2>/dev/null
  wait "$agg" 2>/dev/null || true
  stop_cluster
  python3 -c "print(f'$label: {$MESSAGES} msgs in {$t1 - $t0:.2f} s: {$MESSAGES / ($t1 - $t0):,.0f} msgs/s; CPU of the aggregator and the nodes {$c1 - $c0:.1f} s' + ('' if ${n:-0} >= $MESSAGES else ' (incomplete)'))"
}

echo "A=$A B=$B; $MESSAGES messages; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
for round in $(seq 1 "$ROUNDS"); do
  run "round $round A" "$A"
  run "round $round B" "$B"
done
