#!/usr/bin/env bash
# Install the docker buildx CLI plugin for the current user, if `docker buildx` does not work yet.
#
# The plugin comes from Debian trixie's `docker-buildx` package: apt downloads the .deb with a
# private state/cache dir and a trixie-only sources list (the system's apt sources and state are
# not touched), `dpkg -x` unpacks it, and the plugin binary is copied to ~/.docker/cli-plugins/.
# Engine 20.10 runs BuildKit itself, so buildx's default `docker` driver needs nothing else.
#
# Usage: scripts/install-buildx.sh [--check]
#   (none)    install if missing, then verify `docker buildx version` and a tiny `docker buildx build`
#   --check   exit 0 if `docker buildx version` works, else 1; install nothing
#
# Environment: DOCKER (default docker), DEBIAN_MIRROR (default http://deb.debian.org/debian),
#   BUILDX_SUITE (default trixie), DOCKER_CONFIG (default ~/.docker: plugins go to $DOCKER_CONFIG/cli-plugins).
set -euo pipefail

DOCKER="${DOCKER:-docker}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${BUILDX_SUITE:-trixie}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "install-buildx: $*" >&2; }
die() { echo "install-buildx: $*" >&2; exit 2; }

have_buildx() { "$DOCKER" buildx version >/dev/null 2>&1; }

case "${1:-}" in
  "") ;;
  --check) have_buildx && exit 0 || exit 1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option: $1 (try --help)" ;;
esac

# A tiny build with the default driver proves the engine's BuildKit answers the plugin.
smoke_test() {
  local ctx out
  ctx="$(mktemp -d)"; out="$(mktemp -d)"
  printf 'FROM scratch\nCOPY hello /hello\n' >"$ctx/Dockerfile"
  echo hello >"$ctx/hello"
  if "$DOCKER" buildx build --quiet --output "type=local,dest=$out" "$ctx" >/dev/null 2>"$ctx.err" &&
     [ "$(cat "$out/hello" 2>/dev/null)" = hello ]; then
    rm -rf "$ctx" "$out" "$ctx.err"
    log "docker buildx build works (driver: $("$DOCKER" buildx inspect 2>/dev/null | sed -n 's/^Driver: *//p' | head -n1))"
  else
    cat "$ctx.err" >&2 || true
    rm -rf "$ctx" "$out" "$ctx.err"
    die "docker buildx build failed against the engine"
  fi
}

if have_buildx; then
  log "already installed: $("$DOCKER" buildx version)"
  exit 0
fi

command -v apt-get >/dev/null || die "needs apt-get"
command -v dpkg >/dev/null || die "needs dpkg"
[ -r "$KEYRING" ] || die "missing $KEYRING (debian-archive-keyring)"

work="$(mktemp -d "${TMPDIR:-/tmp}/install-buildx.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc/sources.list.d" "$work/etc/preferences.d" "$work/state/lists/partial" \
  "$work/cache/archives/partial" "$work/deb" "$work/root"
: >"$work/state/status"
printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$DEBIAN_MIRROR" "$SUITE" >"$work/etc/sources.list"

# Everything apt reads or writes lives under $work; only the trusted keyring is the system's.
APT_OPTS=(
  -o "Dir::Etc::SourceList=$work/etc/sources.list"
  -o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$work/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
  -o "Dir::State=$work/state"
  -o "Dir::State::Lists=$work/state/lists"
  -o "Dir::State::status=$work/state/status"
  -o "Dir::Cache=$work/cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "Acquire::Languages=none"
  -o "APT::Architecture=$(dpkg --print-architecture)"
  -o "Debug::NoLocking=1"
)
# As root, apt drops to the _apt user for downloads; that user cannot write our mktemp dir.
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o "APT::Sandbox::User=root")

log "apt-get update ($SUITE, private state in $work)"
apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update of $SUITE failed"
log "apt-get download docker-buildx"
(cd "$work/deb" && apt-get "${APT_OPTS[@]}" -qq download docker-buildx >&2) || die "apt-get download docker-buildx failed"
deb="$(ls "$work"/deb/docker-buildx_*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || die "no docker-buildx .deb downloaded"
log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/root"
bin="$work/root/usr/libexec/docker/cli-plugins/docker-buildx"
[ -x "$bin" ] || die "the .deb has no usr/libexec/docker/cli-plugins/docker-buildx"

mkdir -p "$PLUGIN_DIR"
install -m 0755 "$bin" "$PLUGIN_DIR/docker-buildx.tmp"
mv -f "$PLUGIN_DIR/docker-buildx.tmp" "$PLUGIN_DIR/docker-buildx"

have_buildx || die "installed $PLUGIN_DIR/docker-buildx, but \`$DOCKER buildx version\` still fails"
log "installed $PLUGIN_DIR/docker-buildx: $("$DOCKER" buildx version)"
smoke_test
