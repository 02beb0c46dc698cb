#!/usr/bin/env bash
# The thesaurus scraper on the whole local web, politely: the crawl's time, the build's time,
# and the eval's figures.
#
#   bench/thesaurus-full.sh              (2 workers, the Crawl-delays of scripts/run.sh)
#   WORKERS=4 bench/thesaurus-full.sh
#
# Serves the same hosts as scripts/run.sh (GCIDE, FOLDOC, the Jargon File, and Debian's linux,
# python, postgresql, sqlite and apache documentation, each on its own loopback address with
# a Crawl-delay), crawls them with WORKERS worker processes over a 3-node kvstore cluster
# (fsync always), then builds the thesaurus and scores it (`eval`: WordNet and Moby, words
# seen at least 100 times; the four-choice test). Prints each step's time and the local web's
# politeness oracle (robots violations, gaps under the Crawl-delay, overlapping requests;
# all must be 0). Builds in release mode; every process is stopped by PID on exit.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKERS="${WORKERS:-2}"

"$ROOT/scripts/install-web-data.sh" --full
echo "building kvstore and thesaurus-scraper (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore -p thesaurus-scraper)
KVSTORE="$ROOT/target/release/kvstore"
T="$ROOT/target/release/thesaurus-scraper"

P=$(free_port)
"$T" serve-web \
  --host "127.0.0.2:$P=gcide,crawl_delay=0.005" \
  --host "127.0.0.3:$P=foldoc,crawl_delay=0.01" \
  --host "127.0.0.4:$P=jargon,crawl_delay=0.01" \
  --host "127.0.0.5:$P=dir:/usr/share/doc/linux-doc-6.1/html,crawl_delay=0.01,disallow=/_sources" \
  --host "127.0.0.6:$P=dir:/usr/share/doc/python3.11/html,crawl_delay=0.01,disallow=/_sources" \
  --host "127.0.0.7:$P=dir:/usr/share/doc/postgresql-doc-15/html,crawl_delay=0.01" \
  --host "127.0.0.8:$P=dir:/usr/share/doc/sqlite3,crawl_delay=0.01" \
  --host "127.0.0.9:$P=dir:/usr/share/doc/apache2-doc/manual,crawl_delay=0.01" \
  >"$BENCH_TMP/web.out" 2>"$BENCH_TMP/web.log" &
BENCH_PIDS+=("$!")
until curl -sf "http://127.0.0.9:$P/robots.txt" >/dev/null; do sleep 0.5; done
SEEDS=""
for h in 2 3 4 5 6 7 8 9; do SEEDS="$SEEDS${SEEDS:+,}http://127.0.0.$h:$P/"; done

start_cluster full 64
wait_led >/dev/null
secs() { python3 -c "import time; print(f'{time.time() - $1:.0f}')"; }
t0=$(date +%s.%N)
"$T" crawl --store "$ADDRS" --seeds "$SEEDS" --workers "$WORKERS" >"$BENCH_TMP/crawl.out" 2>"$BENCH_TMP/crawl.log"
echo "crawl: $(secs "$t0") s, $WORKERS workers"
tail -12 "$BENCH_TMP/crawl.out"
curl -s "http://127.0.0.2:$P/__stats" | python3 -c 'import json,sys
d = json.load(sys.stdin)
bad = {k: (v["robots_violations"], v["gaps_below_crawl_delay"], v["overlapping_requests"]) for k, v in d.items()}
print("oracle (robots violations, gaps under the Crawl-delay, overlapping requests):", bad)
print("requests:", sum(v["requests"] for v in d.values()))'
t0=$(date +%s.%N)
"$T" build --store "$ADDRS" 2>"$BENCH_TMP/build.log"
echo "build: $(secs "$t0") s"
grep -E "mapper|reduced|vectors" "$BENCH_TMP/build.log" | sed 's/^.*INFO thesaurus_scraper: //'
t0=$(date +%s.%N)
"$T" eval --store "$ADDRS"
echo "eval: $(secs "$t0") s"
