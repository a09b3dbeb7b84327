#!/usr/bin/env bash
# A local dev environment for a built Flamenco-shaped project: its manager and one worker as
# containers on a private Docker network (what `make -f Makefile.docker dev-start|dev-stop` runs).
#
# Usage: scripts/dev-env.sh [-C DIR] start|stop|status
#   start   run DIR/flamenco-manager and DIR/flamenco-worker (built by `flamenco-build
#           build-optimized`) in containers of the base image, wait until the manager answers
#           and lists the worker, print the URL. Replaces a running environment.
#   stop    remove the containers and the network (and any image) labelled
#           dev.flamenco-build.dev=NAME
#   status  what is running, and the URL
#
# Only the Docker CLI is needed, and no bind mounts: the binaries reach the containers by
# `docker cp`, so a remote engine (DOCKER_HOST) works too; the port is then published on the
# engine's host. The readiness check runs inside the manager container for the same reason.
#
# Environment:
#   DEV_PORT    manager port, published on 127.0.0.1 only (default 8080)
#   DEV_NAME    the environment's name (default: DIR's folder name, lowercased)
#   DEV_LABELS  extra labels for everything made, "K=V K2=V2"
#   DEV_WAIT    seconds to wait for the manager and the worker (default 60)
#   DEV_BASE_IMAGE  default flamenco-build/debian:bookworm (scripts/toolchain-images.sh)
#   DOCKER      default docker
set -euo pipefail

DOCKER="${DOCKER:-docker}"
DEV_PORT="${DEV_PORT:-8080}"
DEV_WAIT="${DEV_WAIT:-60}"
DEV_LABELS="${DEV_LABELS:-}"
BASE_IMAGE="${DEV_BASE_IMAGE:-flamenco-build/debian:bookworm}"
LABEL_KEY="dev.flamenco-build.dev"

die() { echo "dev-env: $*" >&2; exit 1; }
log() { echo "dev-env: $*" >&2; }

dir=.
if [ "${1:-}" = -C ]; then
  [ $# -ge 2 ] || die "-C needs a directory"
  dir="$2"; shift 2
fi
[ $# -eq 1 ] || die "usage: $0 [-C DIR] start|stop|status"
cmd="$1"
[ -d "$dir" ] || die "no such project folder: $dir"
dir="$(cd "$dir" && pwd)"

# A name Docker accepts in container, network and image names.
name="${DEV_NAME:-$(basename "$dir")}"
name="$(printf '%s' "$name" | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')"
[ -n "$name" ] || name=project
[[ "$DEV_PORT" =~ ^[0-9]+$ ]] || die "DEV_PORT must be a port number, not '$DEV_PORT'"

network="fbdev-$name"
manager="fbdev-$name-manager"
worker="fbdev-$name-worker"
worker_name="$name-worker"
url="http://127.0.0.1:$DEV_PORT/"

label_args=(--label "$LABEL_KEY=$name")
for l in $DEV_LABELS; do
  [[ "$l" == ?*=* ]] || die "DEV_LABELS: '$l' is not KEY=VALUE"
  label_args+=(--label "$l")
done
filter="label=$LABEL_KEY=$name"

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine reachable"

stop() {
  local ids
  ids="$("$DOCKER" ps -aq --filter "$filter")"
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || "$DOCKER" rm -f $ids >/dev/null
  ids="$("$DOCKER" network ls -q --filter "$filter")"
  # shellcheck disable=SC2086
  [ -z "$ids" ] || "$DOCKER" network rm $ids >/dev/null
  ids="$("$DOCKER" image ls -q --filter "$filter" | sort -u)"
  # shellcheck disable=SC2086
  [ -z "$ids" ] || "$DOCKER" image rm -f $ids >/dev/null
}

# GET PATH from inside the manager container (bash's /dev/tcp: the base image has no curl),
# so the check also works when the engine is remote. Prints the body.
http_get() {
  "$DOCKER" exec "$manager" bash -c '
    exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3
    sed "1,/^\r\{0,1\}$/d" <&3' _ "$1" 2>/dev/null
}

running() {
  [ "$("$DOCKER" inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

show_logs() {
  local c
  for c in "$manager" "$worker"; do
    "$DOCKER" inspect "$c" >/dev/null 2>&1 || continue
    echo "---- $c (last 20 lines)" >&2
    "$DOCKER" logs --tail 20 "$c" >&2 2>&1 || true
  done
}

start() {
  local bin ctx="" start
  set -E; trap '[ -z "$ctx" ] || rm -rf "$ctx"; stop' ERR # a failing step leaves nothing behind
  for bin in flamenco-manager flamenco-worker; do
    [ -f "$dir/$bin" ] || die "$dir/$bin is missing: build it first (make -f Makefile.docker build-optimized)"
  done
  "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
    die "no image $BASE_IMAGE: run scripts/toolchain-images.sh (or make -f Makefile.docker dev-setup)"

  stop # replace whatever ran before: a restart picks up new binaries
  trap 'stop; exit 130' INT TERM

  # The base image, both binaries copied in with `docker cp` (no bind mounts, no image build),
  # unprivileged; the worker reaches the manager by its container name.
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/fbdev.XXXXXX")"
  cp "$dir/flamenco-manager" "$dir/flamenco-worker" "$ctx/"
  chmod 0755 "$ctx/flamenco-manager" "$ctx/flamenco-worker"
  "$DOCKER" network create "${label_args[@]}" "$network" >/dev/null
  "$DOCKER" create --name "$manager" --network "$network" "${label_args[@]}" --user 65534:65534 \
    -p "127.0.0.1:$DEV_PORT:8080" "$BASE_IMAGE" /usr/local/bin/flamenco-manager -listen :8080 >/dev/null
  "$DOCKER" create --name "$worker" --network "$network" "${label_args[@]}" --user 65534:65534 \
    "$BASE_IMAGE" /usr/local/bin/flamenco-worker -manager "http://$manager:8080" -name "$worker_name" >/dev/null
  "$DOCKER" cp "$ctx/flamenco-manager" "$manager:/usr/local/bin/flamenco-manager"
  "$DOCKER" cp "$ctx/flamenco-worker" "$worker:/usr/local/bin/flamenco-worker"
  rm -rf "$ctx"
  if ! "$DOCKER" start "$manager" >/dev/null; then
    stop; die "could not start the manager (is 127.0.0.1:$DEV_PORT free? set DEV_PORT)"
  fi
  "$DOCKER" start "$worker" >/dev/null || { stop; die "could not start the worker"; }

  start=$SECONDS
  log "waiting up to ${DEV_WAIT}s for the manager and worker $worker_name"
  until http_get /api/v3/worker-mgt/workers | grep -q "\"$worker_name\""; do
    if ! running "$manager" || ! running "$worker"; then
      show_logs; stop; die "a container stopped"
    fi
    if [ $((SECONDS - start)) -ge "$DEV_WAIT" ]; then
      show_logs; stop; die "the manager did not list $worker_name within ${DEV_WAIT}s"
    fi
    sleep 1
  done
  trap - INT TERM ERR
  echo "Flamenco Mini dev environment '$name' is up ($((SECONDS - start))s):"
  echo "  manager  $manager   $url${DOCKER_HOST:+ (on the host of $DOCKER_HOST)}"
  echo "  worker   $worker   registered as $worker_name"
  echo "  logs     docker logs -f $manager"
}

status() {
  local ids
  ids="$("$DOCKER" ps -aq --filter "$filter")"
  if [ -z "$ids" ]; then
    echo "dev environment '$name': not running"
    return 0
  fi
  echo "dev environment '$name':"
  "$DOCKER" ps -a --filter "$filter" --format '{{.Names}}\t{{.Status}}\t{{.Ports}}' | sed 's/^/  /'
  if running "$manager"; then
    echo "  URL: http://$("$DOCKER" port "$manager" 8080/tcp | head -n1)/"
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop; echo "dev environment '$name': stopped and removed" ;;
  status) status ;;
  *) die "unknown command: $cmd (start|stop|status)" ;;
esac
