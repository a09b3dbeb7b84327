# Go toolchain image: Debian's golang-1.MM-go on the bookworm base. One Dockerfile for every Go
# minor version scripts/toolchain-images.sh makes; it passes the three build args below:
#   1.23  bookworm-backports    1.24  trixie    1.25, 1.26  trixie-backports
# Debian's go and its tools are statically linked and depend only on golang-1.MM-src, so the
# packages of a newer suite install on bookworm: that suite is pinned low (priority 100) so that
# nothing else (git, libc) is taken from it.
# Classic builder; needs `--network host` (apt from deb.debian.org).
ARG BASE_IMAGE=flamenco-build/debian:bookworm
FROM ${BASE_IMAGE}

ARG GO_MINOR=1.23
ARG GO_SUITE=bookworm-backports
# The exact version. A backports suite keeps only its newest upload: when this one is gone, the
# newest golang-${GO_MINOR} (same minor version) is taken instead, with a warning in the build log.
ARG GO_DEB_VERSION=1.23.5-1~bpo12+1

RUN set -eux; \
    DEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND; \
    apt-get update; \
    apt-get install -y --no-install-recommends git ca-certificates zip; \
    echo "deb http://deb.debian.org/debian ${GO_SUITE} main" > /etc/apt/sources.list.d/go.list; \
    printf 'Package: *\nPin: release n=%s\nPin-Priority: 100\n' "${GO_SUITE}" > /etc/apt/preferences.d/go-suite; \
    apt-get update; \
    pkgs="golang-${GO_MINOR}-go golang-${GO_MINOR}-src"; \
    if apt-cache madison "golang-${GO_MINOR}-go" | grep -qF "${GO_DEB_VERSION}"; then \
        pkgs="golang-${GO_MINOR}-go=${GO_DEB_VERSION} golang-${GO_MINOR}-src=${GO_DEB_VERSION}"; \
    else \
        echo "warning: golang-${GO_MINOR}-go ${GO_DEB_VERSION} is gone from ${GO_SUITE}; taking the newest ${GO_MINOR}" >&2; \
    fi; \
    apt-get install -y --no-install-recommends -t "${GO_SUITE}" $pkgs; \
    rm -f /etc/apt/sources.list.d/go.list /etc/apt/preferences.d/go-suite; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    ln -s "/usr/lib/go-${GO_MINOR}" /usr/local/go; \
    /usr/local/go/bin/go version | grep -F "go${GO_MINOR}"

# HOME=/tmp: tasks run as an arbitrary uid:gid; GOPATH/GOCACHE default below $HOME.
# GOTOOLCHAIN=local: never try to download another toolchain (no network).
# zip: Flamenco's built-in graph packs the Blender add-on with it.
# /usr/local/go: the same path whatever the minor version (Dockerfile.dev copies it).
ENV HOME=/tmp \
    GOTOOLCHAIN=local \
    PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

LABEL dev.flamenco-build.toolchain=go \
      dev.flamenco-build.toolchain.version=${GO_MINOR}
CMD ["go", "version"]
