#!/usr/bin/env bash
# Load figures for BENCHMARKS.md. Needs a release build:
#   cargo build --release -p aspen --bin aspen --example load
# Usage: bench/run.sh sqlite|postgres [seconds per run]
# Starts a real `aspen serve` on 127.0.0.1:18443 with its own data
# directory, then drives it over keep-alive mTLS with the load example.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite}
SECS=${2:-10}
BIN=target/release/aspen
LOAD=target/release/examples/load
WORK=$(mktemp -d)
PORT=18443
URL=https://127.0.0.1:$PORT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-warn}
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_bench' -c 'create database aspen_bench'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_bench
fi

PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT

start() {  # start [extra args]; prints milliseconds until /health answers
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" serve "$@" 2>"$WORK/serve.log" &
  PID=$!
  until curl -fsk "$URL/health" >/dev/null 2>&1; do sleep 0.02; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }

echo "== $DB, $(nproc) cores, $(date -u +%F)"
echo "first start (keys, CA, seed): $(start) ms"; stop
echo "warm start: $(start) ms"
sleep 2
echo "idle RSS: $(rss)"
stop

"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null
CLIENT=$("$BIN" clients add --kit "$WORK/kit" | sed -n 's/^client_id: //p')
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless | sed -n 's/^client_id: //p')

start >/dev/null
echo "-- client-credentials token issuance (private_key_jwt, PS256 verify per request)"
for c in 1 16 64; do "$LOAD" token --url "$URL" --kit "$WORK/kit" --client-id "$CLIENT" --conns $c --secs "$SECS"; done
stop

for n in 10000 1000000; do
  ms=$(ASPEN_LOG=info start --sandbox-transactions $n)
  seeded=$(grep -o 'bulk_added=[0-9]*.*elapsed_ms=[0-9]*' "$WORK/serve.log" | tail -1 || true)
  echo "-- $n bulk transactions (start incl. seeding: $ms ms; $seeded)"
  read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
  for c in 1 16 64; do
    "$LOAD" get --url "$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions" --kit "$WORK/kit" --bearer "$TOKEN" --conns $c --secs "$SECS"
  done
  stop
done
