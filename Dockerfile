# Build stage: the same system packages scripts/install-deps installs.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      pkg-config libssl-dev libsqlite3-dev libpq-dev libxml2-dev libxmlsec1-dev libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock diesel.toml ./
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bin idgate

# Runtime stage: only the shared libraries the binary links, and no root.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates libssl3 libsqlite3-0 libpq5 libxml2 libxmlsec1 libxmlsec1-openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin idgate \
 && mkdir -p /data && chown idgate:idgate /data
COPY --from=build /src/target/release/idgate /usr/local/bin/idgate
USER idgate
WORKDIR /data
VOLUME ["/data"]
ENV IDGATE_DATABASE_URL=sqlite:///data/idgate.db \
    IDGATE_BIND=0.0.0.0:8080 \
    IDGATE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=6s --start-period=15s --retries=3 CMD ["idgate", "healthcheck"]
ENTRYPOINT ["idgate"]
CMD ["serve"]
