# syntax=docker/dockerfile:1
#
# The jitrbac operator image.
#
#   docker build -t ghcr.io/jitrbac/jitrbac:dev \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages: the operator is built in release mode on Debian bookworm, then copied into
# distroless cc-debian12 (also bookworm). Building and running on the same Debian release
# matters: the binary links glibc dynamically, and a binary built against a newer glibc
# (e.g. on trixie) would not start on bookworm. TLS is rustls, so no OpenSSL is needed at
# build or run time; the C compiler of the build image is only used by `ring`.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Cargo reads every target declared in Cargo.toml (tests, examples), so their sources are
# part of the context; only the operator binary is built. The registry and the target
# directory are BuildKit cache mounts: rebuilds after a source change are incremental.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin jitrbac \
    && install -D -m 0755 target/release/jitrbac /out/jitrbac \
    && /out/jitrbac --version

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="jitrbac" \
      org.opencontainers.image.description="Just-in-time Kubernetes RBAC: time-bound RoleBindings from AccessGrant objects, revoked on time, audited" \
      org.opencontainers.image.url="https://github.com/jitrbac/jitrbac" \
      org.opencontainers.image.source="https://github.com/jitrbac/jitrbac" \
      org.opencontainers.image.documentation="https://github.com/jitrbac/jitrbac#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/jitrbac /jitrbac

# The distroless "nonroot" user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
# Metrics (/metrics) and health (/healthz, /readyz), the ports the Helm chart uses.
EXPOSE 8080 8081

ENTRYPOINT ["/jitrbac"]
CMD ["run"]
