#!/usr/bin/env bash
# Creates a new case study of the suite from templates/case-study (its files hold the
# placeholders @@NAME@@, @@CRATE@@, @@TITLE@@ and @@ABOUT@@): a workspace crate NAME/
# (a library with a pure key layout, the store reached through kvstore's lean client, an
# HTTP service with its page, /health and /metrics, a thin binary with `serve` and `load`,
# registration on the suite's landing page), its end-to-end test against a real 3-node store
# cluster started by the suite's harness, and its README design section to fill in. The
# guide is docs/new-case-study.md.
#
#   scripts/new-case-study.sh NAME [--about "one line on what it does"]
#
# NAME is the crate's name: lowercase letters, digits and dashes, starting with a letter
# (e.g. url-shortener). It is refused if it is not a valid crate name, if NAME/ exists, or if
# a crate of the workspace already has that name. Then:
#
#   cargo build --workspace --bins && cargo test -p NAME
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
NAME=""
ABOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --about) ABOUT="${2:?--about needs a line}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "new-case-study.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$NAME" ] || { echo "new-case-study.sh: one NAME only" >&2; exit 2; }; NAME="$1"; shift ;;
  esac
done
refuse() { echo "new-case-study.sh: $*" >&2; exit 1; }
[ -n "$NAME" ] || { usage >&2; exit 2; }

# A valid crate name, in the suite's spelling (kebab-case), not a keyword or a reserved name.
[[ "$NAME" =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] \
  || refuse "\"$NAME\" is not a valid name: use lowercase letters, digits and single dashes, starting with a letter (e.g. url-shortener)"
[ "${#NAME}" -le 64 ] || refuse "\"$NAME\" is longer than 64 characters"
CRATE="${NAME//-/_}"
case "$CRATE" in
  as|break|const|continue|crate|else|enum|extern|false|fn|for|if|impl|in|let|loop|match|mod|\
  move|mut|pub|ref|return|self|static|struct|super|trait|true|type|unsafe|use|where|while|\
  async|await|dyn|abstract|become|box|do|final|macro|override|priv|typeof|unsized|virtual|\
  yield|try|gen|std|core|alloc|proc_macro|test|tests|build|deps|examples|src|target|docs|\
  scripts|bench|templates)
    refuse "\"$NAME\" is a Rust keyword or a name the toolchain or this repository reserves" ;;
esac
[ ! -e "$NAME" ] || refuse "$NAME/ exists already"
# Any package of the workspace (or a dependency it names) with that name.
if grep -rqsE "^name = \"($NAME|$CRATE)\"" --include=Cargo.toml . 2>/dev/null \
  || grep -qE "^($NAME|$CRATE)(\.workspace)? *=" Cargo.toml */Cargo.toml 2>/dev/null; then
  refuse "a crate named $NAME is in the workspace already"
fi
[ -d templates/case-study ] || refuse "templates/case-study is missing"

# Title Case for the page ("url-shortener" -> "Url Shortener").
TITLE=$(echo "$NAME" | tr '-' ' ' | awk '{for (i = 1; i <= NF; i++) $i = toupper(substr($i, 1, 1)) substr($i, 2)} 1')
ABOUT="${ABOUT:-$TITLE, a case study of the suite}"
ABOUT="${ABOUT%.}"
# Quotes, backslashes and braces would break the Rust strings and TOML the template fills.
case "$ABOUT" in
  *\"*|*\\*|*\{*|*\}*) refuse "--about may not contain quotes, backslashes or braces" ;;
esac
esc() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }

echo "creating $NAME/ from templates/case-study..." >&2
cp -r templates/case-study "$NAME"
find "$NAME" -type f | while read -r f; do
  sed -i -e "s|@@NAME@@|$(esc "$NAME")|g" -e "s|@@CRATE@@|$(esc "$CRATE")|g" \
    -e "s|@@TITLE@@|$(esc "$TITLE")|g" -e "s|@@ABOUT@@|$(esc "$ABOUT")|g" "$f"
done
if grep -rq '@@[A-Z]*@@' "$NAME"; then
  rm -rf "$NAME"
  refuse "the template has a placeholder this script does not fill"
fi

# A member of the workspace.
sed -i -E "s|^(members = \[.*)\"tests\"\]|\1\"$NAME\", \"tests\"]|" Cargo.toml
grep -q "\"$NAME\"" Cargo.toml || {
  rm -rf "$NAME"
  refuse "could not add $NAME to the workspace's members in Cargo.toml (add it by hand)"
}

# The names filled in change line lengths: format it as the house style says.
cargo fmt -p "$NAME" || echo "new-case-study.sh: cargo fmt failed; run it before committing" >&2

cat >&2 <<MSG
created $NAME/ (crate $CRATE), a member of the workspace:
  $NAME/src/keys.rs     the keyspace "$NAME" and its keys (pure)
  $NAME/src/store.rs    reads and writes through ClusterClient, each with its consistency
  $NAME/src/server.rs   the HTTP API, the page, /health, /metrics
  $NAME/src/main.rs     serve and load
  $NAME/tests/service.rs  end to end against a real 3-node store cluster
  $NAME/README.md       the design section to fill in
next:
  cargo build --workspace --bins && cargo test -p $NAME
  then read docs/new-case-study.md, replace the example items with your design, and add
  the service to scripts/run.sh, README.md and ARCHITECTURE.md.
MSG
