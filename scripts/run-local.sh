#!/usr/bin/env bash
# Runs the main job on one machine: a local nats-server with JetStream (started here
# unless one already listens on 127.0.0.1:4222) and the revocast publisher in front
# of it. Extra arguments go to `revocast-publisher serve`.
#
#   ./scripts/run-local.sh                      # API on http://127.0.0.1:8080
#   ./scripts/run-local.sh --admin-token s3cret # require a bearer token
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir="${REVOCAST_DATA_DIR:-./revocast-data}"
mkdir -p "$data_dir"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
nats_bin() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"; return; fi
  command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true
}

listening() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }

nats_pid=""
if listening; then
  echo "run-local: using the NATS server already listening on 127.0.0.1:4222"
else
  bin="$(nats_bin)"
  if [ -z "$bin" ]; then
    echo "run-local: installing nats-server (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
    bin="$(nats_bin)"
  fi
  echo "run-local: starting $bin with JetStream, store in $data_dir/nats"
  "$bin" -a 127.0.0.1 -p 4222 -js -sd "$data_dir/nats" -l "$data_dir/nats-server.log" &
  nats_pid=$!
  trap 'kill "$nats_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do listening && break; sleep 0.1; done
  listening || { echo "run-local: nats-server did not start; see $data_dir/nats-server.log" >&2; exit 1; }
fi

cargo build --release -p revocast-publisher
./target/release/revocast-publisher serve --data-dir "$data_dir" "$@"
