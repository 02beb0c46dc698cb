#!/usr/bin/env bash
# Checks that scripts/new-case-study.sh still makes a case study that builds, passes its
# tests (against a real store cluster) and clippy: creates a throwaway one, `template-check`,
# in this checkout, runs them, and removes it again (Cargo.toml and Cargo.lock restored),
# whatever happens. Run by scripts/test.sh, so by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=template-check
[ ! -e "$NAME" ] || { echo "check-new-case-study.sh: $NAME/ exists; remove it first" >&2; exit 1; }
cp Cargo.toml "$NAME.Cargo.toml.saved"
cp Cargo.lock "$NAME.Cargo.lock.saved"
restore() {
  rm -rf "$NAME"
  mv "$NAME.Cargo.toml.saved" Cargo.toml
  mv "$NAME.Cargo.lock.saved" Cargo.lock
}
trap restore EXIT
scripts/new-case-study.sh "$NAME" --about "A throwaway case study that checks the template" 2>/dev/null
# Refusals: an existing name, and a name that is not one.
if scripts/new-case-study.sh "$NAME" 2>/dev/null; then
  echo "check-new-case-study.sh: an existing name was not refused" >&2
  exit 1
fi
if scripts/new-case-study.sh "Not_A_Name" 2>/dev/null; then
  echo "check-new-case-study.sh: an invalid name was not refused" >&2
  exit 1
fi
cargo build -q -p "$NAME" --bins
cargo test -q -p "$NAME"
cargo clippy -q -p "$NAME" --all-targets -- -D warnings
cargo fmt -p "$NAME" --check
echo "check-new-case-study.sh: a new case study builds, passes its tests and clippy" >&2
