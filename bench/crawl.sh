#!/usr/bin/env bash
# The thesaurus-scraper's crawl speed, measured against Scrapy on the same locally served
# corpus, in one run.
#
#   bench/crawl.sh                     (Debian's linux-doc-6.1 HTML, 16 fetches in flight)
#   CONCURRENCY=32 bench/crawl.sh
#   SITE=/usr/share/doc/python3.11/html bench/crawl.sh
#
# `thesaurus-scraper serve-web` serves SITE (default the linux-doc HTML, about 3,200 pages) on
# 127.0.0.2 with no Crawl-delay. Then, one after the other (never at once: they would share
# the two cores):
#   (a) Scrapy (PyPI, installed here if missing): CONCURRENT_REQUESTS = per-domain =
#       CONCURRENCY, robots.txt obeyed, text extracted (//body//text() without scripts and
#       styles) and counted, links followed within the site;
#   (b) `thesaurus-scraper crawl --impolite --per-host CONCURRENCY --workers 1` over a 3-node
#       kvstore cluster (fsync always): every page's state, text, fingerprints and links go
#       to the replicated frontier, as in a real crawl.
# Printed: pages fetched, seconds, pages/s, CPU seconds per page (the crawler's processes; for
# ours, the store's three nodes separately), and the ratio ours/Scrapy. Goal: at least 3.0.
#
# Builds kvstore and thesaurus-scraper in release mode. Everything listens on loopback ports
# chosen at run time; every process started is stopped by PID on exit.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE="${SITE:-/usr/share/doc/linux-doc-6.1/html}"
CONCURRENCY="${CONCURRENCY:-16}"

"$ROOT/scripts/install-web-data.sh" --full
if ! python3 -c 'import scrapy' 2>/dev/null; then
  echo "installing scrapy (PyPI)" >&2
  python3 -m pip install --quiet scrapy 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages scrapy
fi
echo "building kvstore and thesaurus-scraper (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore -p thesaurus-scraper)
KVSTORE="$ROOT/target/release/kvstore"
T="$ROOT/target/release/thesaurus-scraper"

WEB_PORT=$(free_port)
"$T" serve-web --host "127.0.0.2:$WEB_PORT=dir:$SITE" >"$BENCH_TMP/web.out" 2>"$BENCH_TMP/web.log" &
BENCH_PIDS+=("$!")
until curl -sf "http://127.0.0.2:$WEB_PORT/robots.txt" >/dev/null; do sleep 0.2; done
START="http://127.0.0.2:$WEB_PORT/index.html"
PAGES=$(curl -s "http://127.0.0.2:$WEB_PORT/__pages" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "site: $SITE, $PAGES HTML files, served at http://127.0.0.2:$WEB_PORT/"

echo "--- Scrapy, $CONCURRENCY in flight"
python3 "$ROOT/bench/peers/scrapy_crawl.py" --start "$START" --concurrency "$CONCURRENCY" \
  --per-host "$CONCURRENCY" | tee "$BENCH_TMP/scrapy.json"

echo "--- thesaurus-scraper over a 3-node kvstore cluster, $CONCURRENCY in flight"
start_cluster crawl 64
wait_led >/dev/null
cpu_of() { # cpu_of PID: user+sys seconds of a live process
  awk '{print ($14 + $15) / 100}' "/proc/$1/stat"
}
STORE_CPU0=0
for i in 1 2 3; do STORE_CPU0=$(python3 -c "print($STORE_CPU0 + $(cpu_of "${NODE_PIDS[$i]}"))"); done
T0=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$BENCH_TMP/ours.time" "$T" crawl --store "$ADDRS" --seeds "$START" \
  --workers 1 --impolite --per-host "$CONCURRENCY" >"$BENCH_TMP/ours.out" 2>"$BENCH_TMP/ours.log"
T1=$(date +%s.%N)
STORE_CPU1=0
for i in 1 2 3; do STORE_CPU1=$(python3 -c "print($STORE_CPU1 + $(cpu_of "${NODE_PIDS[$i]}"))"); done
"$T" crawl status --store "$ADDRS" --json >"$BENCH_TMP/ours.json"
python3 - "$BENCH_TMP/scrapy.json" "$BENCH_TMP/ours.json" "$BENCH_TMP/ours.time" "$T0" "$T1" \
  "$STORE_CPU0" "$STORE_CPU1" <<'PY'
import json, sys
scrapy = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ours = json.load(open(sys.argv[2]))
user, sys_ = map(float, open(sys.argv[3]).read().split()[-2:])
seconds = float(sys.argv[5]) - float(sys.argv[4])
store_cpu = float(sys.argv[7]) - float(sys.argv[6])
pages = ours["done"] + ours["duplicate"]
rate = pages / seconds
print(f"{'':28} {'pages':>7} {'seconds':>8} {'pages/s':>8} {'CPU ms/page':>12}")
print(f"{'Scrapy':28} {scrapy['pages']:>7} {scrapy['seconds']:>8.1f} {scrapy['pages_per_s']:>8.1f} "
      f"{1000 * scrapy['cpu_s'] / max(scrapy['pages'], 1):>12.1f}")
print(f"{'thesaurus-scraper (crawler)':28} {pages:>7} {seconds:>8.1f} {rate:>8.1f} "
      f"{1000 * (user + sys_) / max(pages, 1):>12.1f}")
print(f"{'  + its 3 store nodes':28} {'':>7} {'':>8} {'':>8} {1000 * store_cpu / max(pages, 1):>12.1f}")
print(f"ratio (pages/s, ours / Scrapy): {rate / scrapy['pages_per_s']:.2f}   (goal: at least 3.0)")
PY
