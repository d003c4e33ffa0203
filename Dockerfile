# syntax=docker/dockerfile:1
# One image for every Courier binary; the build argument BIN picks the one it runs:
#
#   docker build --build-arg BIN=users -t courier-users .       # users products payments
#   docker build --build-arg BIN=gateway -t courier-gateway .   # orders notifications gateway
#   docker run --rm courier-users --check-config                # settings from COURIER_* env
#
# The build stage compiles every binary and does not depend on BIN, so the six images share it
# (ops/compose.yaml builds them all); the cargo registry and target folder are BuildKit cache
# mounts, so a rebuild compiles what changed. Settings come from the environment only (see
# README, Configuration); ops/compose.yaml and ops/k8s/ set them.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -name 'courier-*' -perm -u+x -exec cp {} /out/ \;

FROM debian:bookworm-slim
# ca-certificates: TLS to NATS or SMTP servers with public roots; curl: the health checks of
# ops/compose.yaml. Same Debian as the build stage, so the same glibc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /var/lib/courier --create-home courier
ARG BIN=users
COPY --from=build /out/courier-${BIN} /usr/local/bin/
RUN ln -s courier-${BIN} /usr/local/bin/courier
# Numeric, so Kubernetes can check runAsNonRoot. The home is the working folder: a service
# left on its default SQLite file writes data/ there.
USER 10001:10001
WORKDIR /var/lib/courier
# 9100: a service's admin listener (/health, /health/ready, /metrics) as ops/ configures it;
# 8080: the gateway. Both are settings (COURIER_ADMIN__BIND, COURIER_GATEWAY__BIND).
EXPOSE 9100 8080
ENTRYPOINT ["/usr/local/bin/courier"]
