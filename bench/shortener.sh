#!/usr/bin/env bash
# The URL shortener's redirects, measured against nginx answering the same redirects from a
# static map, in one run; and the rate of link creation.
#
#   bench/shortener.sh                  (10 seconds per measurement, 32 connections)
#   SECONDS_EACH=30 CONNECTIONS=64 LINKS=5000 bench/shortener.sh
#
# A 3-node kvstore cluster (fsync always) and one `url-shortener serve` in front of it. LINKS
# links are made through the API, then wrk (2 threads, CONNECTIONS connections) asks for
# random codes among them, one after the other (never at once: they would share the cores):
#   (a) nginx (nginx-light) with every link in a `map` and `return 302`: the same answers
#       with no store, no replication and no counting: the ceiling for a redirect;
#   (b) url-shortener, its cache warm (the usual case: a redirect is a cache hit and a click
#       counted in memory, flushed as replicated increments every 250 ms);
#   (c) url-shortener with a cache of 2 entries: nearly every redirect reads its link from
#       the store, from any replica (follower reads spread over the three).
# Then (d) link creation: wrk POSTs new links (each a replicated write if absent, ids taken
# in blocks). Printed: requests/s and p50/p99 latency of each, and the ratio (b)/(a). Goal
# for (b): at least 0.5 of nginx. Clicks counted are checked against the store at the end.
#
# Builds kvstore and url-shortener in release mode; installs wrk and nginx-light if missing.
# Everything listens on loopback ports chosen at run time and is stopped by PID on exit.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH="${SECONDS_EACH:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
LINKS="${LINKS:-1000}"

command -v wrk >/dev/null || apt_install wrk
[ -x /usr/sbin/nginx ] || apt_install nginx-light
echo "building kvstore and url-shortener (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p kvstore -p url-shortener)
KVSTORE="$ROOT/target/release/kvstore"
U="$ROOT/target/release/url-shortener"
echo "commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet || echo ' (with uncommitted changes)'), $(nproc) cores, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"

start_cluster shortener 8
wait_led >/dev/null
start_shortener() { # start_shortener PORT ARGS...: serve on PORT; waits for /health
  local port=$1
  shift
  "$U" serve --store "$ADDRS" --listen "127.0.0.1:$port" "$@" 2>>"$BENCH_TMP/shortener.log" &
  SHORTENER_PID=$!
  BENCH_PIDS+=("$SHORTENER_PID")
  until curl -sf "127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done
}
PORT=$(free_port)
start_shortener "$PORT"

# The links: made through the API; their codes and URLs kept for nginx and wrk.
python3 - "$PORT" "$LINKS" >"$BENCH_TMP/links.tsv" <<'PY'
import json, sys, urllib.request
port, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    url = f"https://example.com/articles/{i}/a-rather-long-title-for-page-{i}?ref=bench"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/links",
                                 data=json.dumps({"url": url}).encode(), method="POST")
    code = json.load(urllib.request.urlopen(req))["code"]
    print(f"{code}\t{url}")
PY
echo "links: $(wc -l <"$BENCH_TMP/links.tsv") made through the API"

# wrk asks for random codes (after its own warm-up of one pass over all of them).
{
  echo 'local paths = {}'
  cut -f1 "$BENCH_TMP/links.tsv" | sed 's|.*|table.insert(paths, "/&")|'
  cat <<'LUA'
math.randomseed(7)
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
LUA
} >"$BENCH_TMP/redirects.lua"
cat >"$BENCH_TMP/create.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/api/links", {["Content-Type"] = "application/json"},
    string.format('{"url": "https://example.com/new/%d/%d"}', math.random(1000000), n))
end
LUA

# wrk_run NAME URL SCRIPT: prints "NAME requests/s p50 p99" and records it.
wrk_run() {
  local name=$1 url=$2 script=$3
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency -s "$script" "$url" >"$BENCH_TMP/$name.wrk" 2>&1
  python3 - "$BENCH_TMP/$name.wrk" "$name" <<'PY' | tee -a "$BENCH_TMP/results"
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: (.*)", text)
total = re.search(r"(\d+) requests in", text).group(1)
print(f"{sys.argv[2]} {rps:.0f} {ms(50):.2f} {ms(99):.2f} requests={total} non-2xx/3xx={bad.group(1) if bad else 0}"
      + (f" socket-errors=[{errors.group(1)}]" if errors else ""))
PY
}

echo "--- (a) nginx, the links in a map, return 302"
NGINX_PORT=$(free_port)
mkdir -p "$BENCH_TMP/nginx"
{
  echo "worker_processes 2; daemon off; pid $BENCH_TMP/nginx/nginx.pid;"
  echo "error_log $BENCH_TMP/nginx/error.log;"
  echo "events { worker_connections 1024; }"
  echo "http { access_log off;"
  echo "  client_body_temp_path $BENCH_TMP/nginx; proxy_temp_path $BENCH_TMP/nginx;"
  echo "  fastcgi_temp_path $BENCH_TMP/nginx; uwsgi_temp_path $BENCH_TMP/nginx; scgi_temp_path $BENCH_TMP/nginx;"
  echo "  map_hash_bucket_size 256; map_hash_max_size 1048576;"
  echo "  map \$uri \$target { default \"\";"
  awk -F'\t' '{printf "    /%s \"%s\";\n", $1, $2}' "$BENCH_TMP/links.tsv"
  echo "  }"
  echo "  server { listen 127.0.0.1:$NGINX_PORT;"
  echo "    location / { if (\$target = \"\") { return 404; } return 302 \$target; } } }"
} >"$BENCH_TMP/nginx/nginx.conf"
/usr/sbin/nginx -c "$BENCH_TMP/nginx/nginx.conf" -p "$BENCH_TMP/nginx" &
BENCH_PIDS+=("$!")
wait_for_port "$NGINX_PORT"
first=$(head -1 "$BENCH_TMP/links.tsv" | cut -f1)
curl -s -o /dev/null -w "  check: /$first -> %{http_code} %{redirect_url}\n" "127.0.0.1:$NGINX_PORT/$first"
wrk_run nginx "http://127.0.0.1:$NGINX_PORT" "$BENCH_TMP/redirects.lua"

echo "--- (b) url-shortener, cache warm"
curl -s -o /dev/null -w "  check: /$first -> %{http_code} %{redirect_url}\n" "127.0.0.1:$PORT/$first"
wrk_run shortener "http://127.0.0.1:$PORT" "$BENCH_TMP/redirects.lua"

echo "--- (c) url-shortener, cache of 2: links read from the store's replicas"
kill -TERM "$SHORTENER_PID"
wait "$SHORTENER_PID" 2>/dev/null || true
start_shortener "$PORT" --cache-entries 2
wrk_run store-reads "http://127.0.0.1:$PORT" "$BENCH_TMP/redirects.lua"

echo "--- (d) url-shortener, creating links"
wrk_run create "http://127.0.0.1:$PORT" "$BENCH_TMP/create.lua"
kill -TERM "$SHORTENER_PID"
wait "$SHORTENER_PID" 2>/dev/null || true

# Every redirect answered by the shortener was a click: the store's counters hold them all.
start_shortener "$PORT"
python3 - "$PORT" "$BENCH_TMP/links.tsv" <<'PY'
import json, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
total = 0
for line in open(path):
    code = line.split("\t")[0]
    total += json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/links/{code}"))["clicks"]
print(f"clicks stored for the {sum(1 for _ in open(path))} links: {total}")
PY
python3 - "$BENCH_TMP/results" <<'PY'
import sys
rows = {l.split()[0]: l.split() for l in open(sys.argv[1])}
def rps(n): return float(rows[n][1])
print()
print(f"{'':14} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
for name, label in [("nginx", "nginx (map)"), ("shortener", "ours, cached"),
                    ("store-reads", "ours, store"), ("create", "ours, create")]:
    r = rows[name]
    print(f"{label:14} {float(r[1]):>11.0f} {float(r[2]):>8.2f} {float(r[3]):>8.2f}  {' '.join(r[4:])}")
print(f"ratio (redirects/s, ours cached / nginx): {rps('shortener') / rps('nginx'):.2f} (goal: at least 0.5)")
PY
