#!/usr/bin/env bash
# Restart time of a data directory with a million keys (the goal: well under two seconds),
# from hint files and from a full scan of the segments.
#   bench/recovery-time.sh [KEYS] [VALUE_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -sr); $(date -u +%Y-%m-%d)"
cargo run --release -q -p kvstore --example recovery_time -- "${1:-1000000}" "${2:-100}"
