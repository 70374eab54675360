# Builds every binary of the workspace (publisher, sidecar, bench) and the example
# protected service into one small image; each compose service picks its entrypoint.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
 && cargo build --release -p revocast-subscriber --example protected_api

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/revocast-publisher /usr/local/bin/
COPY --from=build /src/target/release/revocast-sidecar /usr/local/bin/
COPY --from=build /src/target/release/revocast-bench /usr/local/bin/
COPY --from=build /src/target/release/examples/protected_api /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["revocast-publisher"]
CMD ["serve"]
