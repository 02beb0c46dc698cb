#!/usr/bin/env bash
# Installs the real dictionary data dictionary-search reads (idempotent; uses sudo when not
# root). Nothing is committed and nothing is downloaded at run time: these are Debian's and
# PyPI's packages, installed once.
#
#   wordnet-base        WordNet 3.0 (/usr/share/wordnet: data.*, index.*, *.exc)
#   dict-gcide          GCIDE in dictd format (/usr/share/dictd/gcide.{index,dict.dz})
#   festlex-cmu         CMUdict pronunciations with syllables and stress (Festival's copy:
#                       /usr/share/festival/dicts/cmu/cmudict-0.4.out); rhymes need the stress,
#                       which pocketsphinx-en-us's copy lacks
#   aspell-en           GNU aspell's English dictionary: the "did you mean" baseline
#   codespell           its list of real misspellings with their corrections: the evaluation
#   wordfreq (PyPI)     word frequencies, exported here once to
#                       $DICTIONARY_DATA_DIR/wordfreq-en.tsv (default
#                       ~/.local/share/dictionary-search): "word<TAB>zipf" per line
set -euo pipefail
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
need=()
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
[ -f /usr/share/dictd/gcide.index ] || need+=(dict-gcide)
[ -f /usr/share/festival/dicts/cmu/cmudict-0.4.out ] || need+=(festlex-cmu)
[ -f /usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt ] || need+=(codespell)
command -v aspell >/dev/null && [ -d /usr/lib/aspell ] && ls /usr/lib/aspell/en* >/dev/null 2>&1 \
  || need+=(aspell aspell-en)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing dictionary data: ${need[*]}" >&2
  $sudo apt-get install -y "${need[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y "${need[@]}" >/dev/null
  }
fi

DATA_DIR="${DICTIONARY_DATA_DIR:-$HOME/.local/share/dictionary-search}"
FREQ="$DATA_DIR/wordfreq-en.tsv"
if [ ! -s "$FREQ" ]; then
  if ! python3 -c 'import wordfreq' 2>/dev/null; then
    echo "installing dictionary data: wordfreq (PyPI)" >&2
    python3 -m pip install --quiet 'wordfreq>=3' 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages 'wordfreq>=3'
  fi
  mkdir -p "$DATA_DIR"
  # Every word of wordfreq's large English list with its Zipf frequency (log10 of the
  # frequency per billion words: 7.7 for "the", 1.7 for "acrophobia").
  python3 - "$FREQ.tmp" <<'PY'
import sys, wordfreq
from importlib.metadata import version
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write("# wordfreq %s, English 'large' list: word<TAB>zipf frequency\n" % version("wordfreq"))
    for word in wordfreq.iter_wordlist("en", "large"):
        out.write("%s\t%.2f\n" % (word, wordfreq.zipf_frequency(word, "en", "large")))
PY
  mv "$FREQ.tmp" "$FREQ"
  echo "exported $(wc -l <"$FREQ") word frequencies to $FREQ" >&2
fi
