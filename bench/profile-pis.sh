#!/usr/bin/env bash
# Per-order cost of POST /domestic-payments: instructions (callgrind) and the
# database statements each order makes (sqlx's statement log).
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
#   bench/profile-pis.sh [sqlite|postgres] [orders] [connections]
# `load pis` prepares and authorises the consents and signs the orders with
# the server under valgrind, then waits; the counters are zeroed, the orders
# sent, the counters dumped and divided by the number of orders. A second,
# native run with sqlx's statement log on counts statements, BEGINs and
# COMMITs per order. The dump stays in OUT for callgrind_annotate and
# bench/breakdown.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
N=${2:-200}
C=${3:-1}
BIN=${BIN:-target/release/aspen}
LOAD=${LOAD:-target/release/examples/load}
PORT=${PORT:-18643}
URL=https://127.0.0.1:$PORT
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT
fresh_db() {
  if [ "$DB" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_profile_pis' \
      -c 'create database aspen_profile_pis'
    export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_profile_pis
  else
    rm -f "$ASPEN_DATA_DIR"/*.db*
  fi
}
PID= LPID=
trap 'end_procs "$LPID"; stop; exec 3>&- || true; rm -rf "$WORK"' EXIT

"$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null 2>&1
fresh_db
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')

# Starts `load pis` on a pipe; returns once its orders are prepared.
prepare() {
  rm -f "$WORK/go"; mkfifo "$WORK/go"
  "$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT" --conns "$C" --secs 600 \
    --count "$N" --wait 1 <"$WORK/go" >"$WORK/load.out" 2>"$WORK/load.err" &
  LPID=$!
  exec 3>"$WORK/go"
  until grep -q '^ready' "$WORK/load.err"; do
    kill -0 "$LPID" 2>/dev/null || { cat "$WORK/load.err"; exit 1; }
    sleep 0.5
  done
}
go() { echo go >&3; exec 3>&-; wait "$LPID"; LPID=; cat "$WORK/load.out"; }

# 1. Statements per order: sqlx logs each statement at debug level.
ASPEN_LOG=info,sqlx::query=debug "$BIN" serve >"$WORK/serve.out" 2>"$WORK/stmts.log" &
PID=$!
wait_up "$PID" "$URL/health" "$WORK/stmts.log"
prepare
before=$(wc -l <"$WORK/stmts.log")
go >/dev/null
sleep 1
tail -n +"$((before + 1))" "$WORK/stmts.log" | grep 'sqlx::query' >"$WORK/stmts" || true
stop
count() { grep -c "$1" "$WORK/stmts" || true; }
all=$(wc -l <"$WORK/stmts")
echo "== $DB, $BIN ($(git rev-parse --short HEAD) tree), $N orders, $C connection(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v n="$N" -v all="$all" -v b="$(count 'summary="BEGIN')" -v c="$(count 'summary="COMMIT')" \
  -v r="$(count 'summary="ROLLBACK')" 'BEGIN { printf "statements/order, as sqlx logs them (not its own BEGIN): %.2f (BEGIN %.2f, COMMIT %.2f, ROLLBACK %.2f)\n", all/n, b/n, c/n, r/n }'
sed -n 's/.*summary="\([^"]*\)".*/\1/p' "$WORK/stmts" | sort | uniq -c | sort -rn |
  awk -v n="$N" '{ c=$1; $1=""; printf "  %6.2f %s\n", c/n, $0 }' | head -30

# 2. Instructions per order.
fresh_db
HCLIENT=$("$BIN" clients add --kit "$WORK/kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')
ASPEN_LOG=${ASPEN_LOG:-info} valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  --dump-instr=no "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.log" &
PID=$!
WAIT_SECS=300 wait_up "$PID" "$URL/health" "$WORK/serve.log"
prepare
callgrind_control -z "$PID" >/dev/null 2>&1
go
callgrind_control -d pis "$PID" >/dev/null 2>&1
f=$(ls -t "$OUT"/callgrind.out.* | head -1)
mv "$f" "$OUT/pis-c$C.callgrind"
ir=$(sed -n 's/^summary: //p;s/^totals: //p' "$OUT/pis-c$C.callgrind" | head -1)
printf 'pis c=%s %d instructions/order (dump %s)\n' "$C" $((ir / N)) "$OUT/pis-c$C.callgrind"
