#!/usr/bin/env bash
# The core boundary's cost for BENCHMARKS.md (issue 12): the AIS transactions page and domestic
# payment submissions with `[core] kind = "builtin"` and with `kind = "http"` (the reference
# connector in its own process, mTLS), in one run on one data directory, plus the bare connector
# call. Needs a release build:
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
# Usage: bench/connector.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${1:-10}
BIN=target/release/aspen
LOAD=target/release/examples/load
WORK=$(mktemp -d)
PORT=18443
CPORT=19100
URL=https://127.0.0.1:$PORT
CURL=https://127.0.0.1:$CPORT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-warn}
export ASPEN_SANDBOX__TRANSACTIONS=10000

PID=
CPID=
trap 'stop; end_procs "$CPID"; rm -rf "$WORK"' EXIT

serve() {
  "$BIN" serve >"$WORK/serve.out" 2>>"$WORK/serve.log" &
  PID=$!
  wait_up "$PID" "$URL/health" "$WORK/serve.log"
}

# The connector's own PKI as a "kit" for the load example: aspen's client certificate.
ckit() {
  mkdir -p "$WORK/ckit"
  cp "$ASPEN_DATA_DIR/connector/ca.pem" "$WORK/ckit/ca.pem"
  cp "$ASPEN_DATA_DIR/connector/client.pem" "$WORK/ckit/transport.pem"
  cp "$ASPEN_DATA_DIR/connector/client-key.pem" "$WORK/ckit/transport-key.pem"
  cp "$WORK/kit/signing-key.pem" "$WORK/ckit/signing-key.pem"  # read, unused for GETs
}

connector() {
  "$BIN" connector serve --listen 127.0.0.1:$CPORT >/dev/null 2>>"$WORK/connector.log" &
  CPID=$!
  # Any answer will do (a 404 too); until the connector has written its
  # certificates, curl cannot read them and fails.
  wait_up "$CPID" "$CURL/core/v1/accounts/x" "$WORK/connector.log" --no-fail \
    --cacert "$ASPEN_DATA_DIR/connector/ca.pem" --cert "$ASPEN_DATA_DIR/connector/client.pem" \
    --key "$ASPEN_DATA_DIR/connector/client-key.pem"
}

echo "== $(nproc) cores, $(date -u +%F), 10,000 extra transactions on the measured account"
serve
stop
"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless | sed -n 's/^client_id: //p')

for kind in builtin http; do
  if [ "$kind" = http ]; then
    connector
    export ASPEN_CORE__KIND=http ASPEN_CORE__URL=$CURL
  else
    unset ASPEN_CORE__KIND ASPEN_CORE__URL
  fi
  serve
  echo "-- core = $kind: AIS transactions page (first page, 100 entries)"
  read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
  for c in 1 16; do
    "$LOAD" get --url "$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions" --kit "$WORK/kit" --bearer "$TOKEN" --conns $c --secs "$SECS"
  done
  echo "-- core = $kind: domestic payment submissions"
  for c in 1 16; do
    "$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT" --conns $c --secs "$SECS" --count "${PIS_COUNT:-3000}"
  done
  if [ "$kind" = http ]; then
    ckit
    echo "-- the bare connector call GET /core/v1/accounts/{id} (aspen's client certificate)"
    for c in 1 16; do
      "$LOAD" get --url "$CURL/core/v1/accounts/$ACCOUNT" --kit "$WORK/ckit" --conns $c --secs "$SECS"
    done
  fi
  stop
done
