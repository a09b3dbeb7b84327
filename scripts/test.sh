#!/usr/bin/env bash
# The test command: installs the servers the remote-cache tests start on loopback (nginx-extras,
# redis-server and postgresql from Debian; BuildGrid and moto in a venv under target/), makes the
# toolchain images when missing (cached by content tag), then runs `cargo test` with the given
# arguments. The set-up runs beside the compile, which is the longest part on a clean clone.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...]    e.g. scripts/test.sh --test e2e -- servers_smoke
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

"$repo/scripts/test-servers.sh" &
servers=$!
images=
if docker version >/dev/null 2>&1; then
  # Without an engine the Docker tests fail and say so; the images are not this script's business.
  bash "$repo/scripts/toolchain-images.sh" &
  images=$!
fi

compiled=0
cargo test --no-run "$@" || compiled=$?
wait "$servers" || { echo "scripts/test.sh: installing the test servers failed (above)" >&2; exit 1; }
if [ -n "$images" ]; then
  wait "$images" || { echo "scripts/test.sh: making the toolchain images failed (above)" >&2; exit 1; }
fi
[ "$compiled" = 0 ] || exit "$compiled"
exec cargo test "$@"
