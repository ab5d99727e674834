#!/usr/bin/env bash
# Instructions per request (callgrind) for the token endpoint, discovery and
# JWKS: repeatable on a shared, noisy machine where rates are not.
#   cargo build --release -p aspen
#   bench/profile.sh [sqlite|postgres] [requests per scenario]
#   MODE=cpu bench/profile.sh ...   server CPU time per request instead
# Starts `aspen serve` under valgrind on 127.0.0.1:18543 with its own data
# directory; per scenario it zeroes the counters, sends the requests over
# keep-alive mTLS (bench/drive.mjs), dumps, and divides. An idle interval of
# the same wall time is measured too (background tasks: delivery polling,
# payment sync, purge), and reported apart. The dumps stay in OUT for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
N=${2:-400}
BIN=${BIN:-target/release/aspen}
PORT=${PORT:-18543}
URL=https://127.0.0.1:$PORT
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_profile' -c 'create database aspen_profile'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_profile
fi
PID=
trap 'stop; rm -rf "$WORK"' EXIT

"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null 2>&1
PKJWT=$("$BIN" clients add --kit "$WORK/kit" 2>/dev/null | sed -n 's/^client_id: //p')
TLS=$("$BIN" clients add --kit "$WORK/kit" --auth-method tls_client_auth 2>/dev/null | sed -n 's/^client_id: //p')

drive() { node bench/drive.mjs --url "$URL" --kit "$WORK/kit" "$@"; }

if [ "${MODE:-callgrind}" = cpu ]; then
  # Server CPU time (user + system, so syscalls and thread wake-ups count)
  # per request from /proc, native speed: REPEAT runs of N requests each,
  # every figure printed so the spread shows.
  # As ../shared/peer-bench does: the server on core 0 (so one tokio
  # worker), the client on core 1.
  SRV=() CLI=()
  if [ "$(nproc)" -ge 2 ] && [ "${PIN:-1}" = 1 ]; then SRV=(taskset -c 0) CLI=(taskset -c 1); fi
  drive() { "${CLI[@]}" node bench/drive.mjs --url "$URL" --kit "$WORK/kit" "$@"; }
  "${SRV[@]}" "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.log" &
  PID=$!
  wait_up "$PID" "$URL/health" "$WORK/serve.log"
  hz=$(getconf CLK_TCK)
  # The server's user + system ticks, as a command for drive's hooks.
  ticks="awk '{print \$14 + \$15}' /proc/$PID/stat"
  cpu() {  # cpu name scenario client conns
    local name=$1 sc=$2 id=$3 c=$4 runs=() a b
    drive --scenario "$sc" --client-id "$id" --n 200 --conns "$c" >/dev/null
    for _ in $(seq "${REPEAT:-5}"); do
      # The ticks read on the warm connections: no handshake in a run.
      drive --scenario "$sc" --client-id "$id" --n "$N" --conns "$c" --warm 40 \
        --before "$ticks > $WORK/ticks0" --after "$ticks > $WORK/ticks1" >/dev/null
      a=$(cat "$WORK/ticks0") b=$(cat "$WORK/ticks1")
      runs+=($(( (b - a) * 1000000 / hz / N )))
    done
    printf '%-18s c=%-2s server CPU µs/request: %s (median %s)\n' "$name" "$c" "${runs[*]}" \
      "$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (${#runs[@]} + 1) / 2 ))p")"
  }
  echo "== $DB, cpu, $(git rev-parse --short HEAD), $N requests a run, pinned: ${SRV[*]:-no}, load $(cut -d' ' -f1-3 /proc/loadavg)"
  cpu token-pkjwt pkjwt "$PKJWT" 1
  cpu token-pkjwt pkjwt "$PKJWT" 8
  cpu token-tls tls "$TLS" 1
  cpu token-tls tls "$TLS" 8
  cpu discovery discovery "" 1
  cpu jwks jwks "" 1
  exit 0
fi

valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no \
  "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.log" &
PID=$!
WAIT_SECS=300 wait_up "$PID" "$URL/health" "$WORK/serve.log"
total() {  # total Ir of the newest dump
  local f
  f=$(ls -t "$OUT"/callgrind.out.* | head -1)
  sed -n 's/^summary: //p;s/^totals: //p' "$f" | head -1
}
measure() {  # measure name scenario client conns
  local name=$1 sc=$2 id=$3 c=$4 ms ir
  # Counted on connections already warm, so that no TLS handshake is in the
  # count whatever the connections (bench/drive.mjs).
  ms=$(drive --scenario "$sc" --client-id "$id" --n "$N" --conns "$c" --warm 40 \
    --before "callgrind_control -z $PID >/dev/null 2>&1" \
    --after "callgrind_control -d $name $PID >/dev/null 2>&1" |
    sed -n 's/.* \([0-9.]*\) ms\/request$/\1/p')
  ir=$(total)
  mv "$(ls -t "$OUT"/callgrind.out.* | head -1)" "$OUT/$name.callgrind"
  # Idle: the same wall time with no requests.
  callgrind_control -z "$PID" >/dev/null 2>&1
  sleep "$(awk -v ms="$ms" -v n="$N" 'BEGIN { printf "%d", ms * n / 1000 }')"
  callgrind_control -d "idle" "$PID" >/dev/null 2>&1
  local idle
  idle=$(total)
  rm -f "$(ls -t "$OUT"/callgrind.out.* | head -1)"
  printf '%-22s c=%-2s %8d instructions/request (idle over the same time: %d/request)\n' \
    "$name" "$c" $((ir / N)) $((idle / N))
}

echo "== $DB, $(git rev-parse --short HEAD), $N requests per scenario, dumps in $OUT"
measure token-pkjwt-c1 pkjwt "$PKJWT" 1
measure token-pkjwt-c8 pkjwt "$PKJWT" 8
measure token-tls-c1 tls "$TLS" 1
measure token-tls-c8 tls "$TLS" 8
measure discovery-c1 discovery "" 1
measure jwks-c1 jwks "" 1
