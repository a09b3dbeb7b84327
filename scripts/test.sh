#!/usr/bin/env bash
# The test command: installs the servers the remote-cache tests start on loopback (nginx-extras,
# redis-server and postgresql from Debian; BuildGrid and moto in a venv under target/), then runs
# `cargo test` with the given arguments.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...]    e.g. scripts/test.sh --test e2e -- servers_smoke
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/test-servers.sh"
cd "$repo"
exec cargo test "$@"
