#!/usr/bin/env bash
# Installs what the tests need beyond Rust, if it is missing (idempotent; uses sudo when not
# root): redis-tools (redis-cli, redis-benchmark: real clients for the RESP port), curl,
# chromium (a headless browser for the cluster page), iproute2 (network namespaces), logger
# and rsyslog (syslog clients for the log aggregator; rsyslogd runs as the tests' own
# foreground process, never as the system's daemon) and redis-py (Python's Redis client, for
# its RedisCluster).
set -euo pipefail
need=()
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
command -v python3 >/dev/null || need+=(python3)
command -v ip >/dev/null || need+=(iproute2)
command -v logger >/dev/null || need+=(bsdutils)
{ command -v rsyslogd || [ -x /usr/sbin/rsyslogd ]; } >/dev/null || need+=(rsyslog)
command -v gzip >/dev/null || need+=(gzip)
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
apt_install() {
  echo "installing test dependencies: $*" >&2
  # shellcheck disable=SC2068
  $sudo apt-get install -y $@ >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    # shellcheck disable=SC2068
    $sudo apt-get install -y $@ >/dev/null
  }
}
if [ ${#need[@]} -gt 0 ]; then
  apt_install "$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')"
fi
# redis-py 4.1 or later has RedisCluster: from PyPI for the python3 on the PATH, else Debian's.
if ! python3 -c 'import redis.cluster' 2>/dev/null; then
  echo "installing test dependencies: redis (PyPI)" >&2
  python3 -m pip install --quiet 'redis>=4.1' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'redis>=4.1' 2>/dev/null \
    || apt_install python3-redis
  python3 -c 'import redis.cluster'
fi
# The dictionary's real data (WordNet, GCIDE, CMUdict, word frequencies, aspell's English).
"$(dirname "$0")/install-dictionary-data.sh"
# The thesaurus-scraper's local web (GCIDE, FOLDOC, the Jargon File in dictd format).
"$(dirname "$0")/install-web-data.sh"
