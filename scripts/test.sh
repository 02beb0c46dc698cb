#!/usr/bin/env bash
# Runs every test of the suite on a fresh Debian machine with Rust: installs the real clients
# the tests drive, builds the binaries the end-to-end tests start, then runs all tests, and
# checks that scripts/new-case-study.sh makes a case study that builds and passes its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --workspace --bins
# The lean client the applications link must build without the server, with and without
# the services' part (logging, graceful stop).
cargo check -p kvstore --no-default-features --lib
cargo check -p kvstore --no-default-features --features service --lib
cargo test --workspace
# A case study made from the template builds and passes its tests (then it is removed).
scripts/check-new-case-study.sh
