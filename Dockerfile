# misdirect as a container: a static binary on an empty image, running as a non-root user.
#
#   docker build -t misdirect .
#   docker run --rm -p 8443:8443 -p 9000:9000 misdirect            # coalescing-wrong-server
#   docker run --rm -p 8443:8443 -p 9000:9000 misdirect serve /scenarios/browser-coalescing.json
#
# Build arguments (defaults build from source on Rust's Alpine image, whose target is musl):
#   BUILD_IMAGE  the image of the build stage (it needs a shell, and cargo unless PREBUILT)
#   PREBUILT     path, inside the build context, of an already built static binary to use
#                instead of compiling (what CI does where no registry image can be pulled:
#                BUILD_IMAGE is then a Debian root filesystem it made itself)
ARG BUILD_IMAGE=rust:1.88-alpine

FROM ${BUILD_IMAGE} AS build
ARG PREBUILT=
WORKDIR /src
COPY . .
# hadolint ignore=DL3018
RUN set -eu; \
    mkdir -p /out/certs /out/journal; \
    if [ -n "$PREBUILT" ]; then \
        cp "$PREBUILT" /out/misdirect; \
    else \
        apk add --no-cache musl-dev; \
        cargo build --release --locked; \
        cp target/release/misdirect /out/misdirect; \
    fi; \
    chown 10001:10001 /out/certs /out/journal

FROM scratch AS runtime
COPY --from=build /out/misdirect /misdirect
COPY --from=build --chown=10001:10001 /out/certs /certs
COPY --from=build --chown=10001:10001 /out/journal /journal
COPY scenarios /scenarios
USER 10001:10001
# Inside a container clients come from other hosts: listeners bind all interfaces at
# predictable ports (listener ports of 0 become 8443, 8444, …), and so does the control API.
ENV MISDIRECT_BIND_ALL=true \
    MISDIRECT_BASE_PORT=8443 \
    MISDIRECT_CONTROL=0.0.0.0:9000 \
    MISDIRECT_CONTROL_ALLOW_REMOTE=true \
    MISDIRECT_CERTS_DIR=/certs
VOLUME ["/certs"]
EXPOSE 8443 9000
HEALTHCHECK --interval=1s --timeout=3s --retries=5 CMD ["/misdirect", "health"]
ENTRYPOINT ["/misdirect"]
CMD ["serve", "/scenarios/coalescing-wrong-server.json"]
