# Multi-stage build: compile in the Rust image, run as a non-root user in a slim Debian.
# protoc comes from the protoc-bin-vendored crate and SQLite is bundled, so the builder needs nothing extra.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin control-tower

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/control-tower --create-home control-tower \
    && install -d -o control-tower -g control-tower /var/lib/control-tower/traces
COPY --from=build /src/target/release/control-tower /usr/local/bin/control-tower
USER control-tower
WORKDIR /var/lib/control-tower
ENV JCT_LISTEN_ADDR=0.0.0.0:50051 \
    JCT_TRACE_ROOT=/var/lib/control-tower/traces
EXPOSE 50051
ENTRYPOINT ["control-tower"]
CMD ["serve"]
