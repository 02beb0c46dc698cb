#!/usr/bin/env bash
# Runs the suite with embedded defaults: today a kvstore node (part 1) with its data in
# ./kvstore-data, its binary protocol on 127.0.0.1:7379, Redis protocol on 127.0.0.1:6380 and
# HTTP admin on 127.0.0.1:7380. Stop it with Ctrl-C (graceful: in-flight requests finish and
# everything is fsynced). Later parts add the cluster and the three applications here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kvstore
cat <<MSG
kvstore is starting. In another terminal:
  target/release/kvstore put greeting hello && target/release/kvstore get greeting
  redis-cli -p 6380 set counter 1 && redis-cli -p 6380 incr counter
  curl -s localhost:7380/status; curl -s localhost:7380/metrics | head
MSG
exec target/release/kvstore serve --data-dir "${KVSTORE_DATA_DIR:-./kvstore-data}" "$@"
