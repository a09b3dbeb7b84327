# Go 1.23 toolchain image (Debian bookworm-backports golang-1.23-go).
# Built by scripts/toolchain-images.sh; classic builder, needs `--network host` (apt from deb.debian.org).
ARG BASE_IMAGE=flamenco-build/debian:bookworm
FROM ${BASE_IMAGE}

# The exact backports version. Backports keeps only the newest upload: when this one is gone, the
# newest golang-1.23 (same minor version) is taken instead, with a warning in the build log.
ARG GO_DEB_VERSION=1.23.5-1~bpo12+1

RUN set -eux; \
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list; \
    apt-get update; \
    if apt-cache madison golang-1.23-go | grep -qF "${GO_DEB_VERSION}"; then \
        go_pkgs="golang-1.23-go=${GO_DEB_VERSION} golang-1.23-src=${GO_DEB_VERSION}"; \
    else \
        echo "warning: golang-1.23-go ${GO_DEB_VERSION} is gone from backports; taking the newest 1.23" >&2; \
        go_pkgs="golang-1.23-go golang-1.23-src"; \
    fi; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $go_pkgs git ca-certificates zip; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    /usr/lib/go-1.23/bin/go version

# HOME=/tmp: tasks run as an arbitrary uid:gid; GOPATH/GOCACHE default below $HOME.
# GOTOOLCHAIN=local: never try to download another toolchain (no network).
# zip: Flamenco's built-in graph packs the Blender add-on with it.
ENV HOME=/tmp \
    GOTOOLCHAIN=local \
    PATH=/usr/lib/go-1.23/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

LABEL dev.flamenco-build.toolchain=go \
      dev.flamenco-build.toolchain.version=1.23
CMD ["go", "version"]
