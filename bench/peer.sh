#!/usr/bin/env bash
# aspen beside node-oidc-provider (../shared/peer-bench) and beside the
# floors, in one run. Every server is pinned to core 0, the load comes from
# core 1, and each level measures them in turn, so the ratios and floors
# come from the same minutes of a shared machine.
#   cargo build --release -p aspen        (the server on its own: crates/aspen/build.rs)
#   cargo build --release -p aspen --example ceiling
#   bench/peer.sh sqlite|postgres [binary]
# Environment: PEER_BENCH (default ../shared/peer-bench; a read-only copy
# is run from a writable one by its own run.sh), CEILING, and the
# peer-bench's own (SCENARIOS, CONCURRENCY, DURATION, WARMUP, ...).
# (Its run.sh ends by printing the private_key_jwt headline, so a run whose
# SCENARIOS leave token_cc_pkjwt out exits 1 after its results.)
#
# The floors (crates/aspen/examples/ceiling.rs: aspen's TLS listener and
# mTLS verification answering fixed bytes):
#   ceil       a token response's bytes, nothing else;
#   ceil-db    the same after committing one token-sized row alone in the
#              run's database (SQLite as aspen's lane opens it; PostgreSQL
#              one autocommit INSERT on one held connection): the least a
#              server that keeps its tokens there does for a token. At one
#              connection only; at 8 and 64 its commits are not shared.
#   ceil-pk    the floor of a private_key_jwt token: a PS256 verification
#              (a key parsed once), then the row and a random spent JWT id
#              in `used_jti`'s shape, committed together. At one connection
#              only, as ceil-db; its verification holds at every level.
#   ceil-batch PostgreSQL only: the rows of the requests that wait while
#              a statement is out go together in the next one (up to 24,
#              one statement out at a time), as aspen's token lane does:
#              the floor of a tls_client_auth token at 8 and 64
#              connections, where ceil-db's commits are not shared.
#   ceil-jwks  aspen's own JWKS bytes (floor of the jwks scenario);
#   ceil-disc  aspen's own discovery bytes (floor of the discovery scenario).
# A ceiling answers every path with its bytes, so each one's figure is
# meaningful only in the scenarios named above: the JWKS and discovery
# ceilings sit out the token scenarios, and in the other GET scenario (and
# the token ceilings in both) the load generator reports errors, a body
# without the field it expects.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-sqlite}
BIN=${2:-target/release/aspen}
CEILING=${CEILING:-target/release/examples/ceiling}
PEER_BENCH=${PEER_BENCH:-../shared/peer-bench}
PORT=${PORT:-9443}
# A server still listening from an earlier run would answer in a new one's
# place (its own exit only a line in a log this script then deletes).
for p in $(seq "$PORT" $((PORT + 6))); do
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
    echo "bench/peer.sh: port $p is in use (it needs $PORT to $((PORT + 6)))" >&2
    exit 1
  fi
done
WORK=$(mktemp -d)
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
# 64 connections a level from one address, and the last level's closing.
export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=1024
DBURL=sqlite:$WORK/ceiling.db
DBURL_PK=sqlite:$WORK/ceiling-pk.db
if [ "$DB" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_peer' -c 'create database aspen_peer' \
    -c 'drop database if exists aspen_peer_floor' -c 'create database aspen_peer_floor'
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_peer
  DBURL=postgres://postgres@127.0.0.1:5432/aspen_peer_floor
  DBURL_PK=$DBURL
fi
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT

KIT=$WORK/kit
"$BIN" sandbox init --out "$KIT" --redirect-uri https://bench.example.com/cb >/dev/null
PKJWT=$("$BIN" clients add --kit "$KIT" | sed -n 's/^client_id: //p')
TLS=$("$BIN" clients add --kit "$KIT" --auth-method tls_client_auth | sed -n 's/^client_id: //p')
KID=$(sed -n 's/.*"signing_kid": *"\([^"]*\)".*/\1/p' "$KIT/kit.json")
FILES="sign_key=$KIT/signing-key.pem,cert=$KIT/transport.pem,key=$KIT/transport-key.pem,ca=$ASPEN_DATA_DIR/ca.pem"

get() { curl -fsk --max-time 5 --cert "$KIT/transport.pem" --key "$KIT/transport-key.pem" "$@"; }

taskset -c 0 "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.log" &
ASPEN=$!
PIDS+=("$ASPEN")
wait_up "$ASPEN" "https://127.0.0.1:$PORT/health" "$WORK/serve.log"
TARGETS=(--target "name=aspen,discovery=https://127.0.0.1:$PORT/.well-known/openid-configuration,client_id=$PKJWT,tls_client_id=$TLS,scope=accounts,kid=$KID,$FILES,pid=$ASPEN")

get "https://127.0.0.1:$PORT/jwks" -o "$WORK/jwks.json"
get "https://127.0.0.1:$PORT/.well-known/openid-configuration" -o "$WORK/discovery.json"
# The size of a response to a client-credentials grant with an opaque
# token (45 characters, as aspen's).
echo '{"access_token":"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI","token_type":"Bearer","expires_in":3600,"scope":"accounts"}' \
  >"$WORK/token.json"

SPECS=("ceil token.json" "ceil-db token.json $DBURL" "ceil-pk token.json $DBURL_PK pkjwt")
[ "$DB" = postgres ] && SPECS+=("ceil-batch token.json $DBURL batch")
SPECS+=("ceil-jwks jwks.json" "ceil-disc discovery.json")
p=$PORT
for spec in "${SPECS[@]}"; do
  read -r name body db opt <<<"$spec"
  # Without client ids the load generator skips the token scenarios.
  clients=
  [ "$body" = token.json ] && clients=client_id=x,tls_client_id=x,
  p=$((p + 1))
  taskset -c 0 "$CEILING" "$ASPEN_DATA_DIR" "$WORK/$body" "127.0.0.1:$p" $db $opt >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  wait_up "$!" "https://127.0.0.1:$p/" "$WORK/$name.log"
  u=https://127.0.0.1:$p
  TARGETS+=(--target "name=$name,token=$u/token,jwks=$u/jwks,discovery=$u/.well-known/openid-configuration,${clients}scope=accounts,kid=none,$FILES,pid=$!")
done

echo "== bench/peer.sh $DB, $(nproc) cores, $(date -u +%FT%TZ), $("$BIN" --version 2>/dev/null || echo "$BIN")"
"$PEER_BENCH/run.sh" "${TARGETS[@]}"
