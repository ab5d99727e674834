#!/usr/bin/env bash
# Domestic payment submissions as a share of one core's RSA-2048 sign rate
# (issue 15, goal 4), every figure from one run: the sign rate is measured
# first, then each binary in turn against a fresh database.
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
#   bench/pis-ratio.sh sqlite|postgres [seconds per level] [aspen binaries...]
# PIS_COUNT orders (15,000) are prepared per level (a consent pays once); a level
# that uses them up before its time ends is timed to its last answer. (At
# 3,000, SQLite used them up in under a second on a fast machine.)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
SECS=${2:-8}
shift $(($# < 2 ? $# : 2))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/aspen)
LOAD=${LOAD:-target/release/examples/load}
COUNT=${PIS_COUNT:-15000}
PORT=${PORT:-18743}
URL=https://127.0.0.1:$PORT
WORK=$(mktemp -d)
PID=
trap 'stop; rm -rf "$WORK"' EXIT

SIGN=$(openssl speed -seconds 2 rsa2048 2>/dev/null | awk '$1 == "rsa" && $2 == "2048" { print $(NF-1) }')
echo "== $DB, $(nproc) cores, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), RSA-2048 sign/s (one core): $SIGN"
for BIN in "${BINS[@]}"; do
  rm -rf "$WORK/data" "$WORK/kit"
  export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
  # All load comes from one address: 64 connections and the set-up's own
  # would meet the default cap of 64 per address.
  export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=256
  fresh_db "$DB" aspen_pis_ratio
  serve_headless "$BIN"
  echo "-- $BIN"
  for c in 1 16 64; do
    line=$("$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT" --conns "$c" --secs "$SECS" \
      --count "$COUNT" 2>/dev/null)
    rps=$(sed -n 's/.* rps=\([0-9]*\).*/\1/p' <<<"$line")
    echo "$line ratio=$(awk -v r="$rps" -v s="$SIGN" 'BEGIN { printf "%.1f%%", 100 * r / s }')"
  done
  stop
done
