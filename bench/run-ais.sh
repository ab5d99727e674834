#!/usr/bin/env bash
# The AIS transactions page against the ceiling, in one run: for each
# history size, every given aspen binary serves the same data directory
# (seeded once) at 1/16/64 connections, then the ceiling serves the same
# page bytes on the same TLS listener. Rates on a shared machine move from
# run to run; compare within one run only.
#   cargo build --release -p aspen && cargo build --release -p aspen --example load --example ceiling
#   (the server on its own: see crates/aspen/build.rs)
#   bench/run-ais.sh sqlite|postgres [seconds per level] [binary ...]
# (binaries default to target/release/aspen; pass an older build first to
# get before/after side by side; when the newer build adds a migration, the
# older one cannot open the data directory after it: give one history a
# run, HISTORIES=1000000 bench/run-ais.sh ...)
# Each level also prints the server's CPU a page (user + system, from
# /proc), and on PostgreSQL the database's: steadier from run to run than
# the rates, which move with whatever else shares the two cores.
# DEEP=N also measures page N+1 (its link walked once through `Next`, with
# the first binary) at 16 connections: a keyset walk costs the same at any
# depth (before the twentieth pass of issue 15, SQLite's cost grew with it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
SECS=${2:-8}
shift $(( $# > 2 ? 2 : $# ))
BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=(target/release/aspen)
LOAD=${LOAD:-target/release/examples/load}
CEILING=${CEILING:-target/release/examples/ceiling}
HISTORIES=${HISTORIES:-10000 1000000}
WORK=$(mktemp -d)
PORT=${PORT:-18743}
URL=https://127.0.0.1:$PORT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
# All load comes from one address: 64 connections (and the previous level's,
# still closing) would meet the default cap of 64 per address.
export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=256
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_bench_ais' -c 'create database aspen_bench_ais'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_bench_ais
fi
ticks() {  # CPU clock ticks (user + system) of the given processes
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
measure() {  # measure load-get args...: the level's line, then the CPU a page
  local a0 d0 a1 d1 out ok
  a0=$(ticks "$PID"); d0=$(ticks $(pgrep -x postgres || true))
  out=$("$LOAD" get "$@")
  a1=$(ticks "$PID"); d1=$(ticks $(pgrep -x postgres || true))
  ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$out")
  printf '%s server_us=%s' "$out" $(( (a1 - a0) * 1000000 / HZ / (ok > 0 ? ok : 1) ))
  [ "$DB" = postgres ] && printf ' postgres_us=%s' $(( (d1 - d0) * 1000000 / HZ / (ok > 0 ? ok : 1) ))
  echo
}
PID=
trap 'stop; [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
start() {  # start binary [args]
  local bin=$1
  shift
  "$bin" serve "$@" >"$WORK/serve.out" 2>>"$WORK/serve.log" &
  PID=$!
  wait_up "$PID" "$URL/health" "$WORK/serve.log"
}

echo "== AIS page, $DB, $(nproc) cores, $(date -u +%FT%TZ), ${SECS}s a level, load $(cut -d' ' -f1-3 /proc/loadavg)"
"${BINS[0]}" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null
HCLIENT=$("${BINS[0]}" clients add --kit "$WORK/kit" --headless | sed -n 's/^client_id: //p')
get() {  # get url: as the kit's TPP, with the AC token
  curl -fsk --max-time 30 --cert "$WORK/kit/transport.pem" --key "$WORK/kit/transport-key.pem" \
    -H "authorization: Bearer $TOKEN" "$1"
}
for n in $HISTORIES; do
  TOKEN=
  for bin in "${BINS[@]}"; do
    start "$bin" --sandbox-transactions "$n"
    if [ -z "$TOKEN" ]; then
      read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
      DEEP_URL="$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions"
      for _ in $(seq "${DEEP:-0}"); do
        DEEP_URL=$(get "$DEEP_URL" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Links"]["Next"])')
      done
    fi
    PAGE="$URL/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions"
    echo "-- $n bulk transactions, $bin"
    for c in 1 16 64; do
      measure --url "$PAGE" --kit "$WORK/kit" --bearer "$TOKEN" --conns $c --secs "$SECS"
    done
    if [ "${DEEP:-0}" -gt 0 ]; then
      printf 'page %s: ' "$((DEEP + 1))"
      measure --url "$DEEP_URL" --kit "$WORK/kit" --bearer "$TOKEN" --conns 16 --secs "$SECS"
    fi
    get "$PAGE" >"$WORK/page.json"
    stop
  done
done

echo "-- ceiling: same TLS listener, same bytes ($(wc -c < "$WORK/page.json") B), no application"
"$CEILING" "$ASPEN_DATA_DIR" "$WORK/page.json" 127.0.0.1:$PORT >/dev/null 2>&1 &
PID=$!
wait_up "$PID" "$URL/" /dev/null
for c in 1 16 64; do
  measure --url "$URL/page" --kit "$WORK/kit" --conns $c --secs "$SECS"
done
stop
