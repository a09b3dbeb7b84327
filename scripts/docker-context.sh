#!/usr/bin/env bash
# Makes the build context of dockerfiles/Dockerfile.dev and dockerfiles/Dockerfile: the
# flamenco-build binary and a clean copy of a project (its files known to git, or every file when it
# is not in a git checkout; never .build-cache or built outputs that git ignores).
# Usage: scripts/docker-context.sh PROJECT_DIR CONTEXT_DIR [FLAMENCO_BUILD_BINARY]
set -euo pipefail
project=${1:?usage: docker-context.sh PROJECT_DIR CONTEXT_DIR [BINARY]}
ctx=${2:?usage: docker-context.sh PROJECT_DIR CONTEXT_DIR [BINARY]}
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin=${3:-$repo/target/release/flamenco-build}
[ -x "$bin" ] || { echo "docker-context.sh: no flamenco-build binary at $bin (cargo build --release)" >&2; exit 1; }
rm -rf "$ctx/project"
mkdir -p "$ctx/project"
cp "$bin" "$ctx/flamenco-build"
if git -C "$project" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$project" && git ls-files -z --cached --others --exclude-standard . | tar --null -cf - -T -) | tar -C "$ctx/project" -xf -
else
  tar -C "$project" --exclude=.build-cache -cf - . | tar -C "$ctx/project" -xf -
fi
