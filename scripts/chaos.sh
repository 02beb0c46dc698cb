#!/usr/bin/env bash
# Runs the whole suite under a long seeded fault schedule and writes its report: the fault
# timeline with each application's requests, errors and p99 around each fault, as a text
# table (report.txt) and a plot (report.svg). It is the CI test `suite_chaos` made longer:
# one 3-node store; the dictionary, the log aggregator and a crawl on it, each under its own
# workload; store nodes killed, paused, cut off, joined, drained; application processes killed.
#
#   scripts/chaos.sh [--minutes N] [--seed S] [--out DIR]
#
# Defaults: 10 minutes, a seed from the clock, DIR = chaos-report/. The same seed replays the
# same schedule. Exits non-zero if a promise broke (a lost or doubled log line, a page crawled
# twice, a non-linearizable history, the dictionary silent); the report is written either way.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=10
SEED=$(( $(date +%s) % 1000000 ))
OUT=chaos-report
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$MINUTES$SEED" in
  *[!0-9]*) echo "chaos.sh: --minutes and --seed take whole numbers" >&2; exit 2 ;;
esac
scripts/install-test-deps.sh
scripts/install-dictionary-data.sh
cargo build -q --workspace --bins
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "chaos: $MINUTES minutes, seed $SEED; the report goes to $OUT/" >&2
status=0
SUITE_CHAOS_SEED="$SEED" SUITE_CHAOS_SECONDS=$((MINUTES * 60)) SUITE_CHAOS_REPORT="$OUT" \
  cargo test -q -p tests --test suite_chaos -- --nocapture 2>&1 | tee "$OUT/run.log" \
  || status=$?
[ -f "$OUT/report.txt" ] && cat "$OUT/report.txt"
echo "chaos: the log is $OUT/run.log, the plot $OUT/report.svg" >&2
exit "$status"
