#!/usr/bin/env bash
# Runs the suite with embedded defaults: a 3-node kvstore cluster (parts 1 to 3: the keyspace
# `default` in 64 partitions, each a Raft group of three), data in ./kvstore-data/node-N, and
# on it the dictionary (case study 1: the real WordNet, GCIDE and CMUdict data, installed by
# scripts/install-dictionary-data.sh, loaded into the keyspace `dictionary` once and reused on
# restart) served at http://127.0.0.1:8380/, and the log aggregator (case study 3: two
# aggregator nodes at http://127.0.0.1:8390/ and :8392, syslog on 127.0.0.1:5514 TCP and UDP,
# and an agent shipping the suite's own logs, ./kvstore-data/logs/*.log, a generated web
# service's logs and the machine's /var/log/*.log where readable), and the thesaurus scraper
# (case study 2: a local web of real text on 127.0.0.2-9:8081, served by `serve-web` from
# Debian's dictionaries and documentation, installed by scripts/install-web-data.sh --full;
# a crawl of it by two worker processes, resumed on restart; then the thesaurus build; the
# thesaurus and the crawl's progress at http://127.0.0.1:8400/), and the URL shortener (case
# study 4, at http://127.0.0.1:8500/). Every service registers in
# the store, and every node's admin port serves the suite's landing page, /suite
# (http://127.0.0.1:7380/suite on node 1). Node N listens on:
#
#   node 1: binary 127.0.0.1:7379, Redis 127.0.0.1:6380, HTTP 127.0.0.1:7380, peers 7371
#   node 2: binary 127.0.0.1:7479, Redis 127.0.0.1:6480, HTTP 127.0.0.1:7480, peers 7471
#   node 3: binary 127.0.0.1:7579, Redis 127.0.0.1:6580, HTTP 127.0.0.1:7580, peers 7571
#
# Stop it with Ctrl-C (every node shuts down gracefully). SINGLE_NODE=1 runs one
# unreplicated node instead (part 1: binary 7379, Redis 6380, HTTP 7380). Extra arguments go
# to every `kvstore serve`. Later parts add the three applications here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kvstore
K=target/release/kvstore
DATA="${KVSTORE_DATA_DIR:-./kvstore-data}"

if [ "${SINGLE_NODE:-0}" = 1 ]; then
  echo "kvstore (single node) is starting; try: $K put greeting hello && $K get greeting"
  exec "$K" serve --data-dir "$DATA" "$@"
fi

scripts/install-dictionary-data.sh
scripts/install-web-data.sh --full
cargo build --release -q -p dictionary-search -p log-aggregator -p thesaurus-scraper -p url-shortener
D=target/release/dictionary-search
S=target/release/url-shortener
L=target/release/log-aggregator
T=target/release/thesaurus-scraper
STORE="127.0.0.1:7379,127.0.0.1:7479,127.0.0.1:7579"
# Every process's log, also in files the log agent follows.
LOGS="$DATA/logs"
mkdir -p "$LOGS"

PEERS="1=127.0.0.1:7371,2=127.0.0.1:7471,3=127.0.0.1:7571"
PIDS=()
APP_PIDS=()
stop() {
  trap - INT TERM EXIT
  # The applications first (they finish their requests), then the store under them.
  if [ ${#APP_PIDS[@]} -gt 0 ]; then
    echo "stopping the applications..." >&2
    kill -TERM "${APP_PIDS[@]}" 2>/dev/null || true
    wait "${APP_PIDS[@]}" 2>/dev/null || true
  fi
  echo "stopping the cluster..." >&2
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  base=$((7279 + 100 * i))
  "$K" serve --data-dir "$DATA/node-$i" --node-id "$i" --peers "$PEERS" \
    --peer-listen "127.0.0.1:$((base - 8))" --listen "127.0.0.1:$base" \
    --resp-listen "127.0.0.1:$((base - 999))" --http-listen "127.0.0.1:$((base + 1))" \
    --idle-spin-us 0 "$@" 2> >(tee -a "$LOGS/kvstore-node-$i.log" >&2) &
  PIDS+=("$!")
done
# The dictionary: load (a no-op when the store holds this dataset already), then serve.
until "$K" cluster --addr "$STORE" status >/dev/null 2>&1; do sleep 0.5; done
"$D" load --store "$STORE"
NO_COLOR=1 "$D" serve --listen 127.0.0.1:8380 --store "$STORE" 2> >(tee -a "$LOGS/dictionary.log" >&2) &
APP_PIDS+=("$!")

# The log aggregator: two aggregator nodes, an agent, and a workload for it to follow.
[ -s "$DATA/log-token" ] || od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DATA/log-token"
LOG_INGEST_TOKEN=$(cat "$DATA/log-token")
export LOG_INGEST_TOKEN
# Each keeps its index on disk: a restart reads it back and catches up from the journal.
"$L" serve --store "$STORE" --name aggregator-1 --http 127.0.0.1:8390 \
  --syslog-tcp 127.0.0.1:5514 --syslog-udp 127.0.0.1:5514 \
  --index-dir "$DATA/aggregator-1-index" 2>>"$LOGS/aggregator-1.log" &
APP_PIDS+=("$!")
"$L" serve --store "$STORE" --name aggregator-2 --http 127.0.0.1:8392 \
  --syslog-tcp 127.0.0.1:5516 --syslog-udp 127.0.0.1:5516 \
  --index-dir "$DATA/aggregator-2-index" 2>>"$LOGS/aggregator-2.log" &
APP_PIDS+=("$!")
"$L" generate --out "$LOGS/shop.log" --rate 20 &
APP_PIDS+=("$!")
# The machine's own logs, those this user may read.
MACHINE=""
for f in /var/log/syslog /var/log/*.log; do
  if [ -r "$f" ]; then MACHINE="$MACHINE${MACHINE:+, }\"$f\""; fi
done
{
  cat <<TOML
name = "$(cat /proc/sys/kernel/hostname)"
aggregators = ["127.0.0.1:8390", "127.0.0.1:8392"]
token_file = "$DATA/log-token"
state_dir = "$DATA/log-agent"
[[files]]
paths = ["$LOGS/shop.log"]
service = "shop"
multiline_start = '^\d{4}-'
[[files]]
paths = ["$LOGS/kvstore-*.log", "$LOGS/dictionary.log", "$LOGS/aggregator-*.log", "$LOGS/url-shortener.log"]
[syslog]
tcp = "127.0.0.1:5520"
udp = "127.0.0.1:5520"
[http]
listen = "127.0.0.1:8391"
TOML
  # From their end: what the machine logs from now on, not its history.
  if [ -n "$MACHINE" ]; then printf '[[files]]\npaths = [%s]\nread_from = "end"\n' "$MACHINE"; fi
} >"$DATA/log-agent.toml"
"$L" agent --config "$DATA/log-agent.toml" 2>>"$LOGS/agent.out" &
APP_PIDS+=("$!")

# The URL shortener (case study 4): links, redirects and click counts in the keyspace `links`.
NO_COLOR=1 "$S" serve --store "$STORE" --listen 127.0.0.1:8500 2>>"$LOGS/url-shortener.log" &
APP_PIDS+=("$!")

# The thesaurus scraper: the local web (one host per source, each with its robots.txt and a
# Crawl-delay), the crawl (resumed where it stopped), the build once it is done, and serve.
"$T" serve-web \
  --host 127.0.0.2:8081=gcide,crawl_delay=0.005 \
  --host 127.0.0.3:8081=foldoc,crawl_delay=0.01 \
  --host 127.0.0.4:8081=jargon,crawl_delay=0.01 \
  --host 127.0.0.5:8081=dir:/usr/share/doc/linux-doc-6.1/html,crawl_delay=0.01,disallow=/_sources \
  --host 127.0.0.6:8081=dir:/usr/share/doc/python3.11/html,crawl_delay=0.01,disallow=/_sources \
  --host 127.0.0.7:8081=dir:/usr/share/doc/postgresql-doc-15/html,crawl_delay=0.01 \
  --host 127.0.0.8:8081=dir:/usr/share/doc/sqlite3,crawl_delay=0.01 \
  --host 127.0.0.9:8081=dir:/usr/share/doc/apache2-doc/manual,crawl_delay=0.01 \
  >/dev/null 2>>"$LOGS/web.log" &
APP_PIDS+=("$!")
NO_COLOR=1 "$T" serve --store "$STORE" --listen 127.0.0.1:8400 2>>"$LOGS/thesaurus.log" &
APP_PIDS+=("$!")
(
  # Stopped, it stops its crawl or build first (each shuts down gracefully on SIGTERM).
  child=""
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; exit 0' TERM INT
  until curl -sf http://127.0.0.9:8081/robots.txt >/dev/null; do sleep 0.5; done
  SEEDS=""
  for h in 2 3 4 5 6 7 8 9; do SEEDS="$SEEDS${SEEDS:+,}http://127.0.0.$h:8081/"; done
  "$T" crawl --store "$STORE" --seeds "$SEEDS" --workers 2 >>"$LOGS/crawl.out" 2>>"$LOGS/crawl.log" &
  child=$!
  wait "$child" || exit 0
  "$T" build --store "$STORE" --if-stale >>"$LOGS/crawl.out" 2>>"$LOGS/thesaurus-build.log" &
  child=$!
  wait "$child"
) &
APP_PIDS+=("$!")

# Fair sharing: each application's keyspace gets limits, so a runaway crawl or a log flood
# meets a clear error (OverQuota, RateLimited) instead of starving the others. Set once each
# keyspace exists (its application creates it); `kvstore keyspace list` shows them.
(
  limit() {
    until "$K" keyspace --addr "$STORE" limit "$@" >/dev/null 2>&1; do sleep 2; done
  }
  limit dictionary --max-bytes 1G
  limit logs --max-bytes 2G --max-ops 20000
  limit crawl --max-bytes 2G --max-ops 20000
  limit links --max-bytes 1G --max-ops 20000
) &
APP_PIDS+=("$!")

cat <<MSG
A 3-node kvstore cluster is running, and on it:
  http://127.0.0.1:7380/suite                         # the landing page: every service, its health, its keyspaces
  http://127.0.0.1:8380/                              # the dictionary (API: /api/suggest?q=acro, ...)
  http://127.0.0.1:8390/                              # the logs: search, histogram, live tail
  http://127.0.0.1:8400/                              # the thesaurus, and the crawl's progress
  http://127.0.0.1:8500/                              # the URL shortener: make a link, count its clicks
  curl -s 127.0.0.1:8400/api/synonyms/happy           # once the crawl and the build are done
  logger -n 127.0.0.1 -P 5514 -T --rfc5424 -t demo hello   # syslog straight to an aggregator
  curl -s '127.0.0.1:8392/api/query?q=error&service=shop&limit=3'   # the other aggregator finds it
In another terminal:
  $K cluster status                                   # per node: replicas, leaders, keys, bytes, moves
  open http://127.0.0.1:7380/                         # the live cluster page (any node's admin port)
  $K put greeting hello --addr 127.0.0.1:7479         # any node: followers redirect to the leader
  $K get greeting --addr 127.0.0.1:7579 --consistency follower
  redis-cli -c -p 6380 set counter 1 && redis-cli -c -p 6480 incr counter
  pkill -9 -f -- '--node-id 1 '; $K put x y --addr 127.0.0.1:7379,127.0.0.1:7479,127.0.0.1:7579
MSG
wait "${PIDS[@]}"
