#!/usr/bin/env bash
# Installs the servers the remote-cache tests start on loopback (each test its own, on a free port):
#   Debian: nginx-extras (WebDAV: Bazel's HTTP cache protocol), redis-server, postgresql (BuildGrid's
#           scheduler state)
#   PyPI, in a Python 3.11 venv at target/test-servers/venv: buildgrid (REAPI gRPC), moto[server]
#           (S3), psycopg2-binary (BuildGrid's PostgreSQL driver); every dependency pinned by
#           scripts/test-servers-constraints.txt
# Idempotent and quiet when everything is there; prints what it installs; exits non-zero with a
# message when anything fails. Safe to run from several test processes at once (flock).
#
# Usage: scripts/test-servers.sh    Environment: PYTHON (default: python3.11 on PATH)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="$REPO_ROOT/target/test-servers"
VENV="$HOME_DIR/venv"
CONSTRAINTS="$REPO_ROOT/scripts/test-servers-constraints.txt"
NGINX_DAV_MODULE=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so

# The pins (checked working together: BuildGrid 0.4.4 is the newest release for Python 3.11).
PIP_PINS=(
  "buildgrid==0.4.4"
  "moto[server]==5.2.5"
  "psycopg2-binary==2.9.13"
)
APT_PACKAGES=(nginx-extras redis-server postgresql)

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

fail() {
  echo "scripts/test-servers.sh: $*" >&2
  exit 1
}

say() {
  echo "test-servers: $*" >&2
}

# True when the Debian servers are all there (nginx with the WebDAV module, redis, PostgreSQL).
debian_servers_present() {
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || return 1
  [ -f "$NGINX_DAV_MODULE" ] || return 1
  command -v redis-server >/dev/null 2>&1 || return 1
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || return 1
}

install_debian_servers() {
  debian_servers_present && return 0
  say "installing Debian packages: ${APT_PACKAGES[*]}"
  [ "$(id -u)" = 0 ] || fail "installing ${APT_PACKAGES[*]} needs root (apt-get); run as root or install them"
  export DEBIAN_FRONTEND=noninteractive
  apt_get update -qq >&2 || fail "apt-get update failed"
  apt_get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >&2 \
    || fail "apt-get install ${APT_PACKAGES[*]} failed"
  debian_servers_present || fail "after apt-get install, nginx (with $NGINX_DAV_MODULE), redis-server or initdb is still missing"
}

# A Python 3.11 with venv and ensurepip (pyenv's, or Debian's with python3.11-venv).
find_python() {
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    py="$(command -v python3.11 || true)"
  fi
  if [ -z "$py" ] && [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: python3.11 python3.11-venv"
    apt_get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt_get install -y -qq \
      --no-install-recommends python3.11 python3.11-venv >&2 || fail "apt-get install python3.11 failed"
    py=/usr/bin/python3.11
  fi
  [ -n "$py" ] && "$py" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
    || fail "needs Python 3.11 with venv and ensurepip (set PYTHON=/path/to/python3.11)"
  echo "$py"
}

# What the venv was made from: a different stamp means the pins changed and the venv is remade.
venv_stamp() {
  { printf '%s\n' "${PIP_PINS[@]}"; cat "$CONSTRAINTS"; } | sha256sum | cut -d' ' -f1
}

venv_present() {
  [ -f "$VENV/.pins" ] && [ "$(cat "$VENV/.pins")" = "$(venv_stamp)" ] \
    && [ -x "$VENV/bin/bgd" ] && [ -x "$VENV/bin/moto_server" ]
}

install_venv() {
  venv_present && return 0
  local py
  py="$(find_python)"
  say "making the venv $VENV (${PIP_PINS[*]}; this takes a few minutes)"
  rm -rf "$VENV"
  "$py" -m venv "$VENV" || fail "python -m venv $VENV failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS" "${PIP_PINS[@]}" >&2 \
    || fail "pip install ${PIP_PINS[*]} failed"
  "$VENV/bin/bgd" --help >/dev/null || fail "bgd --help failed in $VENV"
  "$VENV/bin/moto_server" --help >/dev/null || fail "moto_server --help failed in $VENV"
  "$VENV/bin/python" -c 'import psycopg2' || fail "psycopg2 does not import in $VENV"
  venv_stamp >"$VENV/.pins"
  say "venv ready"
}

main() {
  mkdir -p "$HOME_DIR" || fail "cannot create $HOME_DIR"
  # One installer at a time; the others wait, then find everything there.
  exec 9>"$HOME_DIR/.lock"
  flock 9 || fail "cannot lock $HOME_DIR/.lock"
  install_debian_servers
  install_venv
}

main "$@"
