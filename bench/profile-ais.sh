#!/usr/bin/env bash
# Instructions per AIS transactions page (callgrind), measured as
# bench/profile.sh measures tokens: repeatable on a shared machine.
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
#   bench/profile-ais.sh [sqlite|postgres] [requests] [bulk history]
# Seeds the history at native speed first, then runs `aspen serve` under
# valgrind on 127.0.0.1:18643, gets an AC token (ReadTransactionsDetail,
# bound to the kit's certificate) with the load example, and per scenario
# zeroes the counters, sends N first-page GETs over keep-alive mTLS
# (bench/drive.mjs), dumps and divides. The dumps stay in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
N=${2:-300}
HIST=${3:-10000}
BIN=${BIN:-target/release/aspen}
LOAD=${LOAD:-target/release/examples/load}
PORT=${PORT:-18643}
URL=https://127.0.0.1:$PORT
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_profile_ais' -c 'create database aspen_profile_ais'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_profile_ais
fi
PID=
trap 'stop; rm -rf "$WORK"' EXIT

"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null 2>&1
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')

# Seeding under valgrind would take minutes: seed natively, then restart.
"$BIN" serve --sandbox-transactions "$HIST" >"$WORK/serve.out" 2>"$WORK/serve.log" &
PID=$!
wait_up "$PID" "$URL/health" "$WORK/serve.log"
read -r TOKEN ACCOUNT < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT")
stop

valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no \
  "$BIN" serve --sandbox-transactions "$HIST" >"$WORK/serve.out" 2>"$WORK/serve.log" &
PID=$!
WAIT_SECS=300 wait_up "$PID" "$URL/health" "$WORK/serve.log"
PAGE=/open-banking/v3.1/aisp/accounts/$ACCOUNT/transactions
drive() { node bench/drive.mjs --url "$URL" --kit "$WORK/kit" --scenario get --bearer="$TOKEN" "$@"; }
total() {
  sed -n 's/^summary: //p;s/^totals: //p' "$(ls -t "$OUT"/callgrind.out.* | head -1)" | head -1
}
measure() {  # measure name path conns
  local name=$1 path=$2 c=$3 ir
  # Counted on warm connections: no TLS handshake in the count.
  drive --path "$path" --n "$N" --conns "$c" --warm 40 \
    --before "callgrind_control -z $PID >/dev/null 2>&1" \
    --after "callgrind_control -d $name $PID >/dev/null 2>&1" >/dev/null
  ir=$(total)
  mv "$(ls -t "$OUT"/callgrind.out.* | head -1)" "$OUT/$name.callgrind"
  printf '%-22s c=%-2s %8d instructions/request\n' "$name" "$c" $((ir / N))
}
# A later page: the first page's Next link (its summary rides in the link).
NEXT=$(curl -fsk --max-time 30 --cert "$WORK/kit/transport.pem" --key "$WORK/kit/transport-key.pem" \
  -H "authorization: Bearer $TOKEN" "$URL$PAGE" | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(new URL(JSON.parse(s).Links.Next).pathname+new URL(JSON.parse(s).Links.Next).search))')

echo "== $DB, $(git rev-parse --short HEAD), $HIST bulk transactions, $N requests per scenario, dumps in $OUT"
measure ais-first-c1 "$PAGE" 1
measure ais-first-c16 "$PAGE" 16
measure ais-next-c1 "$NEXT" 1
