#!/usr/bin/env bash
# The main job on a fresh machine with a Docker engine: make the pinned toolchain images when they
# are missing, build flamenco-build, and build examples/flamenco-mini with it, end to end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/toolchain-images.sh"
cargo build --release --manifest-path "$repo/Cargo.toml"
exec "$repo/target/release/flamenco-build" -C "$repo/examples/flamenco-mini" build "$@"
