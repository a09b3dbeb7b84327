#!/usr/bin/env bash
# Make the pinned toolchain Docker images locally (no registry needed):
#   flamenco-build/debian:bookworm  debootstrap --variant=minbase bookworm + docker import
#   flamenco-build/go:1.23          dockerfiles/toolchains/go.Dockerfile   (bookworm-backports)
#   flamenco-build/go:1.24          the same, golang-1.24-go from trixie         (only when named)
#   flamenco-build/go:1.25, 1.26    the same, from trixie-backports              (only when named)
#   flamenco-build/node:22          dockerfiles/toolchains/node.Dockerfile (PyPI wheel; Yarn 1 from Debian)
#   flamenco-build/java:11          dockerfiles/toolchains/java.Dockerfile (PyPI wheels, + openapi-generator)
#
# Every image is built as NAME:VERSION-c<12 hex> (a content tag: sha256 over its recipe,
# this script and, for the toolchains, the base's content tag) and then tagged NAME:VERSION.
# If the content-tagged image exists, it is only (re)tagged: no debootstrap, no downloads.
#
# Usage: scripts/toolchain-images.sh [--prune | --check | --print-tags | --help] [IMAGE... | --for DIR]
#   IMAGE         which images: a reference (flamenco-build/go:1.26), its short form (go:1.26) or
#                 `all`; default: the base, go:1.23, node:22 and java:11 (what the example needs).
#                 The base is made whenever a toolchain image needs it.
#   --for DIR     the default images and the Go image DIR's go.mod asks for (its `go` and
#                 `toolchain` lines, as the built-in Flamenco graph picks it)
#   (no option)   make whatever is missing, print one line per image
#   --prune       the same, then remove this script's own stale content-tagged images
#                 (NAME:VERSION-c<hash> carrying our labels but not the current hash)
#   --check       exit 0 if every image exists with its current content tag (and the
#                 NAME:VERSION tag points at it), else print what is missing and exit 1
#   --print-tags  print "<key> <NAME:VERSION> <NAME:VERSION-cHASH>" per image, build nothing
#
# Environment: DOCKER (default docker), DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Needs root for debootstrap (only when the base image must be made).
set -euo pipefail

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)"
TC_DIR="$REPO_ROOT/dockerfiles/toolchains"
WHEELS_TXT="$TC_DIR/wheels.txt"
WHEELS_DIR="$TC_DIR/wheels"
DOCKER="${DOCKER:-docker}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL_KEY="dev.flamenco-build.toolchain"

# key | repository | version tag | Dockerfile (empty: the debootstrap base) | build args | made by default
# The Go images differ only in their build args: Debian suite and exact package version.
IMAGES=(
  "debian|flamenco-build/debian|bookworm|||yes"
  "go|flamenco-build/go|1.23|go.Dockerfile|GO_MINOR=1.23 GO_SUITE=bookworm-backports GO_DEB_VERSION=1.23.5-1~bpo12+1|yes"
  "go-1.24|flamenco-build/go|1.24|go.Dockerfile|GO_MINOR=1.24 GO_SUITE=trixie GO_DEB_VERSION=1.24.4-1|"
  "go-1.25|flamenco-build/go|1.25|go.Dockerfile|GO_MINOR=1.25 GO_SUITE=trixie-backports GO_DEB_VERSION=1.25.12-1~bpo13+1|"
  "go-1.26|flamenco-build/go|1.26|go.Dockerfile|GO_MINOR=1.26 GO_SUITE=trixie-backports GO_DEB_VERSION=1.26.11-1~bpo13+1|"
  "node|flamenco-build/node|22|node.Dockerfile||yes"
  "java|flamenco-build/java|11|java.Dockerfile||yes"
)

die() { echo "toolchain-images: $*" >&2; exit 2; }
log() { echo "toolchain-images: $*" >&2; }

MODE=build
PRUNE=
case "${1:-}" in
  --prune) MODE=build; PRUNE=1; shift ;;
  --check) MODE=check; shift ;;
  --print-tags) MODE=print; shift ;;
  -h|--help) sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

# The Go minor version a go.mod asks for: the newer of its `go` and `toolchain` lines (Go refuses a
# module whose `go` line is newer than itself), never older than the oldest image made (1.23).
go_mod_minor() {
  local f="$1/go.mod" v best=23 m
  [ -f "$f" ] || { log "no $f: only the default images"; return 0; }
  for v in $(sed -nE 's/^[[:space:]]*go[[:space:]]+1\.([0-9]+).*/\1/p; s/^[[:space:]]*toolchain[[:space:]]+go1\.([0-9]+).*/\1/p' "$f"); do
    m=$((10#$v)); [ "$m" -le "$best" ] || best=$m
  done
  echo "1.$best"
}

# Which images to make: keys, in IMAGES order.
declare -A WANTED=()
want() { # a reference, its short form, `all` or `default`
  local spec key repo ver found=
  for spec in "${IMAGES[@]}"; do
    IFS='|' read -r key repo ver _ _ dflt <<<"$spec"
    case "$1" in
      all) WANTED[$key]=1; found=1 ;;
      default) [ -z "$dflt" ] || WANTED[$key]=1; found=1 ;;
      "$repo:$ver"|"${repo#flamenco-build/}:$ver") WANTED[$key]=1; found=1 ;;
    esac
  done
  [ -n "$found" ] || die "no such image: $1 (this script makes: $(for s in "${IMAGES[@]}"; do IFS='|' read -r _ r v _ <<<"$s"; printf '%s ' "$r:$v"; done))"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --for) [ $# -ge 2 ] || die "--for needs a folder"
           want default; minor="$(go_mod_minor "$2")"; [ -z "$minor" ] || want "go:$minor"; shift 2 ;;
    -*) die "unknown option: $1 (try --help)" ;;
    *) want "$1"; shift ;;
  esac
done
[ ${#WANTED[@]} -gt 0 ] || want default
# Every toolchain image is built FROM the base.
WANTED[debian]=1

sha() { sha256sum | cut -c1-12; }
# This script's own contribution to every content tag: its text without comment-only
# and blank lines, so editing comments does not force a rebuild.
script_recipe() { grep -vE '^[[:space:]]*(#|$)' "$SCRIPT_PATH"; }

# ---- content tags ---------------------------------------------------------------
declare -A CTAG ALIAS CONTENT
BASE_HASH="$(
  { printf 'base:debootstrap --variant=minbase bookworm %s\n' "$DEBIAN_MIRROR"; script_recipe; } | sha
)"
declare -A BUILD_ARGS
for spec in "${IMAGES[@]}"; do
  IFS='|' read -r key repo ver dockerfile args _ <<<"$spec"
  BUILD_ARGS[$key]="$args"
  if [ -z "$dockerfile" ]; then
    h="$BASE_HASH"
  else
    [ -f "$TC_DIR/$dockerfile" ] || die "missing $TC_DIR/$dockerfile"
    h="$(
      {
        printf 'image:%s base:c%s\n' "$key" "$BASE_HASH"
        printf 'build-args:%s\n' "$args"
        cat "$TC_DIR/$dockerfile"
        # Only the wheel-based images depend on wheels.txt.
        if grep -q 'wheels/' "$TC_DIR/$dockerfile"; then cat "$WHEELS_TXT"; fi
        script_recipe
      } | sha
    )"
  fi
  CTAG[$key]="c$h"
  ALIAS[$key]="$repo:$ver"
  CONTENT[$key]="$repo:$ver-c$h"
done

image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

if [ "$MODE" = print ]; then
  for spec in "${IMAGES[@]}"; do
    key="${spec%%|*}"
    [ -n "${WANTED[$key]:-}" ] || continue
    echo "$key ${ALIAS[$key]} ${CONTENT[$key]}"
  done
  exit 0
fi

if [ "$MODE" = check ]; then
  rc=0
  for spec in "${IMAGES[@]}"; do
    key="${spec%%|*}"
    [ -n "${WANTED[$key]:-}" ] || continue
    id="$(image_id "${CONTENT[$key]}")"
    if [ -z "$id" ]; then
      echo "missing: ${CONTENT[$key]}"; rc=1
    elif [ "$(image_id "${ALIAS[$key]}")" != "$id" ]; then
      echo "stale tag: ${ALIAS[$key]} does not point at ${CONTENT[$key]}"; rc=1
    else
      echo "ok: ${ALIAS[$key]} = ${CONTENT[$key]} $id"
    fi
  done
  exit "$rc"
fi

# ---- build mode -----------------------------------------------------------------
# One builder at a time per machine; a second caller waits, then takes the fast path.
LOCK_FILE="${TMPDIR:-/tmp}/flamenco-build-toolchain-images.lock"
exec 9>>"$LOCK_FILE"
command -v flock >/dev/null && flock 9

CLEANUP_DIRS=()
cleanup() {
  local d
  for d in "${CLEANUP_DIRS[@]+"${CLEANUP_DIRS[@]}"}"; do
    [ -n "$d" ] && [ -d "$d" ] || continue
    # debootstrap mounts proc/sys inside its target; never rm -rf through a mount.
    awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$d" || log "could not fully remove $d"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

report() { # key, status
  local id; id="$(image_id "${CONTENT[$1]}")"
  echo "toolchain $1: ${ALIAS[$1]} ($2) $id"
}

# Tag and report if the content-tagged image exists; returns 1 if it must be built.
fast_path() {
  local key="$1"
  [ -n "$(image_id "${CONTENT[$key]}")" ] || return 1
  "$DOCKER" tag "${CONTENT[$key]}" "${ALIAS[$key]}"
  report "$key" cached
}

# apt-get that waits for another apt (an unattended upgrade, a parallel script) instead of failing
# on its lock: dpkg's lock through DPkg::Lock::Timeout, the lists lock (`update`) by retrying.
apt_get() {
  local err tries=0
  err="$(mktemp)"
  until apt-get -o DPkg::Lock::Timeout=600 "$@" 2>"$err"; do
    if grep -q 'Could not get lock' "$err" && [ "$tries" -lt 120 ]; then
      tries=$((tries + 1)); sleep 5; continue
    fi
    cat "$err" >&2; rm -f "$err"; return 1
  done
  cat "$err" >&2; rm -f "$err"
}

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root"; }

build_base() {
  local key=debian rootfs start
  start=$SECONDS
  if ! command -v debootstrap >/dev/null; then
    need_root "installing debootstrap"
    log "installing debootstrap"
    apt_get update -qq && DEBIAN_FRONTEND=noninteractive apt_get install -y -qq debootstrap >/dev/null
  fi
  need_root "debootstrap"
  rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/flamenco-debootstrap.XXXXXX")"
  CLEANUP_DIRS+=("$rootfs")
  log "debootstrap --variant=minbase bookworm (about a minute)"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"
  fi
  rm -f "$rootfs.log"
  # Docker-friendly trimming, like the official debian images.
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  printf '%s\n' 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-excludes"
  # Drop docs (keep copyright files), man pages and translations: about 45 MB.
  find "$rootfs/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/lintian/*
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.??* 2>/dev/null || true
  : >"$rootfs/etc/resolv.conf"; : >"$rootfs/etc/hostname"
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    "$DOCKER" import \
      -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      -c "ENV LANG=C.UTF-8" \
      -c "ENV HOME=/tmp" \
      -c "LABEL $LABEL_KEY=debian" \
      -c "LABEL dev.flamenco-build.content-tag=${CTAG[$key]}" \
      -c 'CMD ["bash"]' \
      -m "flamenco-build base: debootstrap --variant=minbase bookworm" \
      - "${CONTENT[$key]}" >/dev/null
  cleanup; CLEANUP_DIRS=()
  "$DOCKER" tag "${CONTENT[$key]}" "${ALIAS[$key]}"
  report "$key" "built in $((SECONDS - start))s"
}

WHEELS_READY=
download_wheels() {
  [ -z "$WHEELS_READY" ] || return 0
  local pip=()
  if python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
  elif command -v pip3 >/dev/null; then pip=(pip3)
  else
    need_root "installing python3-pip"
    apt_get update -qq && DEBIAN_FRONTEND=noninteractive apt_get install -y -qq python3-pip >/dev/null
    pip=(python3 -m pip)
  fi
  mkdir -p "$WHEELS_DIR"
  log "pip download -r wheels.txt (hash-checked)"
  # Hashes in wheels.txt switch pip into --require-hashes mode; files already in
  # $WHEELS_DIR with the right hash are reused, not downloaded again.
  PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 \
    -d "$WHEELS_DIR" -r "$WHEELS_TXT" >&2
  WHEELS_READY=1
}

build_image() {
  local key="$1" dockerfile="$2" start ctx f logf
  start=$SECONDS
  if grep -q 'wheels/' "$TC_DIR/$dockerfile"; then download_wheels; fi
  # A minimal build context: the Dockerfile plus only the wheel files it COPYs.
  mkdir -p "$WHEELS_DIR"
  ctx="$(mktemp -d "$WHEELS_DIR/.ctx-$key.XXXXXX")"
  CLEANUP_DIRS+=("$ctx")
  mkdir -p "$ctx/wheels"
  cp "$TC_DIR/$dockerfile" "$ctx/Dockerfile"
  for f in $(grep -E '^[[:space:]]*COPY[[:space:]]' "$TC_DIR/$dockerfile" |
               grep -oE '(^|[[:space:]])wheels/[A-Za-z0-9_.*-]*\.whl' | sort -u); do
    # shellcheck disable=SC2086 # the glob is intended
    for w in $TC_DIR/$f; do
      [ -f "$w" ] || die "$dockerfile wants $f but wheels/ has no such file (wheels.txt out of sync?)"
      ln -f "$w" "$ctx/wheels/" 2>/dev/null || cp -f "$w" "$ctx/wheels/"
    done
  done
  logf="$ctx.log"
  log "building ${CONTENT[$key]} from $dockerfile"
  local args=() a
  for a in ${BUILD_ARGS[$key]}; do args+=(--build-arg "$a"); done
  if ! DOCKER_BUILDKIT=0 "$DOCKER" build --network host --force-rm \
      --build-arg "BASE_IMAGE=${CONTENT[debian]}" "${args[@]+"${args[@]}"}" \
      --label "$LABEL_KEY=$key" \
      --label "dev.flamenco-build.content-tag=${CTAG[$key]}" \
      -t "${CONTENT[$key]}" "$ctx" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2; rm -f "$logf"
    die "docker build of ${CONTENT[$key]} failed"
  fi
  rm -f "$logf"
  # The classic builder leaves the untagged image of each throwaway stage (unzipped
  # wheels, a few hundred MB); those stages carry this label, and prune only takes
  # dangling images, so nothing else is touched.
  "$DOCKER" image prune -f --filter "label=dev.flamenco-build.build-stage=$key-unpack" >/dev/null || true
  "$DOCKER" tag "${CONTENT[$key]}" "${ALIAS[$key]}"
  report "$key" "built in $((SECONDS - start))s"
}

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine reachable"

for spec in "${IMAGES[@]}"; do
  IFS='|' read -r key repo ver dockerfile _ <<<"$spec"
  [ -n "${WANTED[$key]:-}" ] || continue
  fast_path "$key" && continue
  if [ -z "$dockerfile" ]; then build_base; else build_image "$key" "$dockerfile"; fi
done

# --prune: untag/remove older content tags made by this script (toolchains before the
# base, since old toolchain images are children of old base images).
if [ -n "$PRUNE" ]; then
  for ((i = ${#IMAGES[@]} - 1; i >= 0; i--)); do
    IFS='|' read -r key repo ver dockerfile _ <<<"${IMAGES[$i]}"
    "$DOCKER" images --filter "label=$LABEL_KEY=$key" --filter "label=dev.flamenco-build.content-tag" \
        --filter "reference=$repo:$ver-c*" --format '{{.Repository}}:{{.Tag}}' |
      while read -r ref; do
        [[ "$ref" =~ ^$repo:$ver-c[0-9a-f]{12}$ ]] || continue
        [ "$ref" = "${CONTENT[$key]}" ] && continue
        "$DOCKER" image rm "$ref" >/dev/null && log "pruned $ref"
      done
  done
fi
