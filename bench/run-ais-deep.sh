#!/usr/bin/env bash
# A first AIS transactions page against one deep in the history, for each
# given build in one run: the same page link (walked once through `Next`)
# for every build. A keyset walk costs the same at any depth; before the
# twentieth pass of issue 15, SQLite's cost grew with the depth.
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   bench/run-ais-deep.sh sqlite|postgres HISTORY PAGES [seconds] [binary ...]
# e.g. bench/run-ais-deep.sh sqlite 1000000 1000 4 old/aspen target/release/aspen
# (the link to page PAGES+1 is walked with the first binary, one request a
# page: a slow build makes that walk slow too).
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite}
HIST=${2:-100000}
PAGES=${3:-500}
SECS=${4:-4}
shift $(( $# > 4 ? 4 : $# ))
BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=(target/release/aspen)
LOAD=${LOAD:-target/release/examples/load}
WORK=$(mktemp -d)
PORT=${PORT:-18746}
URL=https://127.0.0.1:$PORT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-warn}
export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=256
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_bench_deep' -c 'create database aspen_bench_deep'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_bench_deep
fi
PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT

echo "== AIS deep page, $DB, $HIST entries, page $((PAGES + 1)), $(nproc) cores, $(date -u +%FT%TZ)"
"${BINS[0]}" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null
HCLIENT=$("${BINS[0]}" clients add --kit "$WORK/kit" --headless | sed -n 's/^client_id: //p')
TOKEN=
get() {
  curl -fsk --cert "$WORK/kit/transport.pem" --key "$WORK/kit/transport-key.pem" \
    -H "authorization: Bearer $TOKEN" "$1"
}
for bin in "${BINS[@]}"; do
  "$bin" serve --sandbox-transactions "$HIST" >"$WORK/serve.out" 2>>"$WORK/serve.log" &
  PID=$!
  until curl -fsk "$URL/health" >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { echo "$bin exited: $(tail -1 "$WORK/serve.log")" >&2; exit 1; }
    sleep 0.1
  done
  if [ -z "$TOKEN" ]; then
    read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
    FIRST="$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions"
    DEEP=$FIRST
    for _ in $(seq "$PAGES"); do
      DEEP=$(get "$DEEP" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Links"]["Next"])')
    done
  fi
  echo "-- $bin"
  for u in "$FIRST" "$DEEP"; do
    printf '%-10s ' "$([ "$u" = "$FIRST" ] && echo 'page 1' || echo "page $((PAGES + 1))")"
    "$LOAD" get --url "$u" --kit "$WORK/kit" --bearer "$TOKEN" --conns 16 --secs "$SECS"
  done
  stop
done
