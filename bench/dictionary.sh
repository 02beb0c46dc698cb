#!/usr/bin/env bash
# The dictionary, measured against SQLite FTS5 and Xapian on the same data (every merged
# entry, `dictionary-search export`) and the same seeded queries (`dictionary-search
# bench-queries`: prefixes of common words, real misspellings from codespell's list, words of
# real definitions), side by side in one run; then the full-data load into a 3-node store,
# a replica's index build and memory, and the latency over HTTP on loopback.
#
#   bench/dictionary.sh                 (1,000 queries of each kind, each timed 3 times)
#   PER_KIND=2000 SEED=7 bench/dictionary.sh
#
# Server side: each system in its own process, the query timed around the call that answers
# it (ours: the Index method the API handler calls; SQLite and Xapian: through their Python
# bindings, which add a few microseconds). HTTP: `dictionary-search bench --http`, 8
# keep-alive connections, against `dictionary-search serve` on a replica of the store.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PER_KIND="${PER_KIND:-1000}"
SEED="${SEED:-1}"

"$ROOT/scripts/install-dictionary-data.sh"
apt_install python3-xapian sqlite3
echo "building kvstore and dictionary-search (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore -p dictionary-search)
KVSTORE="$ROOT/target/release/kvstore"
D="$ROOT/target/release/dictionary-search"

echo
echo "dictionary-search $(git -C "$ROOT" rev-parse --short HEAD); $(nproc) cores; $PER_KIND queries" \
  "of each kind, seed $SEED; $(date -u +%F)"
"$D" export --out "$BENCH_TMP/entries.jsonl" 2>/dev/null
"$D" bench-queries --out "$BENCH_TMP/queries.tsv" --per-kind "$PER_KIND" --seed "$SEED" 2>/dev/null

echo "--- server side (in-process) ---"
"$D" bench --queries "$BENCH_TMP/queries.tsv" 2>/dev/null | tee "$BENCH_TMP/ours.jsonl"
/usr/bin/python3 "$ROOT/bench/peers/dictionary_peers.py" --entries "$BENCH_TMP/entries.jsonl" \
  --queries "$BENCH_TMP/queries.tsv" | tee "$BENCH_TMP/peers.jsonl"

echo "--- the store: full load, a replica's build, HTTP on loopback ---"
start_cluster dict 64
wait_led >/dev/null
wait_settled >/dev/null
t0=$(date +%s.%N)
"$D" load --store "$ADDRS" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -E "loaded the dictionary" || true
t1=$(date +%s.%N)
port=$(free_port)
"$D" serve --listen "127.0.0.1:$port" --store "$ADDRS" 2>"$BENCH_TMP/serve.log" &
SERVE=$!
BENCH_PIDS+=("$SERVE")
for _ in $(seq 1 600); do
  curl -sf "127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
t2=$(date +%s.%N)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SERVE/status")
python3 -c "print(f'load {($t1-$t0):.1f} s (whole command, parsing included); replica ready {($t2-$t1):.1f} s after start; replica RSS {$rss_kb/1024:.0f} MB')"
"$D" bench --queries "$BENCH_TMP/queries.tsv" --http "127.0.0.1:$port" --connections 8 --rounds 2 \
  2>/dev/null | tee "$BENCH_TMP/http.jsonl"
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
stop_cluster

echo "--- summary (server side: p50 / p99 µs, queries/s) ---"
python3 - "$BENCH_TMP/ours.jsonl" "$BENCH_TMP/peers.jsonl" "$BENCH_TMP/http.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for p in sys.argv[1:] for l in open(p) if l.startswith("{") and '"kind"' in l]
by = {(r["system"], r["mode"].split(",")[0], r["kind"]): r for r in rows}
print("%-8s %-26s %22s %12s %12s" % ("kind", "system", "p50 / p99 µs", "queries/s", "right first"))
for kind in ["prefix", "spell", "search"]:
    for (system, mode, k), r in sorted(by.items()):
        if k == kind:
            rf = "%.1f%%" % (100 * r["right_first"]) if "right_first" in r else ""
            print("%-8s %-26s %10.1f / %9.1f %12d %12s" % (kind, system + " (" + mode + ")", r["p50_us"], r["p99_us"], r["qps"], rf))
ours = by.get(("dictionary-search", "in-process", "prefix"))
sq = by.get(("sqlite-fts5", "in-process", "prefix"))
if ours and sq:
    print("prefix against SQLite FTS5: %.1fx the queries/s, %.1fx lower p50, %.1fx lower p99" % (
        ours["qps"] / sq["qps"], sq["p50_us"] / ours["p50_us"], sq["p99_us"] / ours["p99_us"]))
PY
