#!/usr/bin/env bash
# Installs what the tests need beyond Rust, if it is missing (idempotent; uses sudo when not
# root): redis-tools (redis-cli, redis-benchmark: real clients for the RESP port) and curl.
set -euo pipefail
need=()
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
echo "installing test dependencies: $pkgs" >&2
# shellcheck disable=SC2086
$sudo apt-get install -y $pkgs >/dev/null 2>&1 || {
  $sudo apt-get update >/dev/null
  # shellcheck disable=SC2086
  $sudo apt-get install -y $pkgs >/dev/null
}
