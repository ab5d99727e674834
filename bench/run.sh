#!/usr/bin/env bash
# Load figures for BENCHMARKS.md. Needs a release build:
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
# Usage: bench/run.sh sqlite|postgres [seconds per run]
# Starts a real `aspen serve` on 127.0.0.1:18443 with its own data
# directory, then drives it over keep-alive mTLS with the load example.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
SECS=${2:-10}
BIN=target/release/aspen
LOAD=target/release/examples/load
WORK=$(mktemp -d)
PORT=18443
URL=https://127.0.0.1:$PORT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
# All load comes from one address: 64 connections (and the previous level's,
# still closing) would meet the default cap of 64 per address.
export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=256
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_bench' -c 'create database aspen_bench'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_bench
fi

PID=
trap 'stop; rm -rf "$WORK"' EXIT

MS=0
start() {  # start [extra args]; sets MS to the milliseconds until /health answers
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" serve "$@" >"$WORK/serve.out" 2>"$WORK/serve.log" &
  PID=$!
  wait_up "$PID" "$URL/health" "$WORK/serve.log"
  t1=$(date +%s%N)
  MS=$(( (t1 - t0) / 1000000 ))
}

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }

echo "== $DB, $(nproc) cores, $(date -u +%F)"
start; echo "first start (keys, CA, seed): $MS ms"; stop
start; echo "warm start: $MS ms"
sleep 2
echo "idle RSS: $(rss)"
stop

"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null
CLIENT=$("$BIN" clients add --kit "$WORK/kit" | sed -n 's/^client_id: //p')
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless | sed -n 's/^client_id: //p')

start
echo "-- client-credentials token issuance (private_key_jwt, PS256 verify per request)"
for c in 1 16 64; do "$LOAD" token --url "$URL" --kit "$WORK/kit" --client-id "$CLIENT" --conns $c --secs "$SECS"; done
stop

start
echo "-- domestic payment submissions (verify one request JWS, sign one response, pay)"
for c in 1 16 64; do
  "$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT" --conns $c --secs "$SECS" --count "${PIS_COUNT:-4000}"
done
stop

for n in 10000 1000000; do
  start --sandbox-transactions $n
  seeded=$(grep -o 'bulk_added=[0-9]*.*elapsed_ms=[0-9]*' "$WORK/serve.log" | tail -1 || true)
  echo "-- $n bulk transactions (start incl. seeding: $MS ms; $seeded)"
  read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
  for c in 1 16 64; do
    "$LOAD" get --url "$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions" --kit "$WORK/kit" --bearer "$TOKEN" --conns $c --secs "$SECS"
  done
  if [ "$n" = 10000 ]; then
    curl -fsk --max-time 30 --cert "$WORK/kit/transport.pem" --key "$WORK/kit/transport-key.pem" -H "authorization: Bearer $TOKEN" \
      "$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions" -o "$WORK/page.json"
  fi
  stop
done

echo "-- ceiling: same TLS listener, same bytes ($(wc -c < "$WORK/page.json") B), no application"
target/release/examples/ceiling "$ASPEN_DATA_DIR" "$WORK/page.json" 127.0.0.1:$PORT >/dev/null 2>&1 &
PID=$!
wait_up "$PID" "$URL/" /dev/null
for c in 1 16 64; do
  "$LOAD" get --url "$URL/page" --kit "$WORK/kit" --conns $c --secs "$SECS"
done
stop
