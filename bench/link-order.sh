#!/usr/bin/env bash
# Regenerates crates/aspen/link/order.txt, the order in which the release
# binary's linker lays out functions (crates/aspen/build.rs; issue 15, tenth
# pass in BENCHMARKS.md). Needs a release build:
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   (the server on its own: see crates/aspen/build.rs)
#   bench/link-order.sh
# Runs `aspen serve` under callgrind on SQLite and on PostgreSQL (skipped,
# with a note, where 127.0.0.1:5432 does not answer), dumps once start-up is
# done, then sends the requests a TPP sends (tokens both ways, discovery,
# JWKS, an authorisation-code consent, AIS reads, domestic payments) and
# dumps again. The file lists the functions start-up ran, then those only the
# requests ran; each group sorted by name so a regeneration diffs cleanly.
# Run it again after a toolchain or Cargo.lock change: symbol names carry
# hashes of the crates' build metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BIN=${BIN:-target/release/aspen}
LOAD=${LOAD:-target/release/examples/load}
PORT=${PORT:-18743}
URL=https://127.0.0.1:$PORT
OUT=$(mktemp -d)
PID=
WORK=
trap 'stop; rm -rf "$OUT" ${WORK:+"$WORK"}' EXIT

profile() {  # profile sqlite|postgres
  local db=$1
  WORK=$(mktemp -d)
  export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=info
  unset ASPEN_DATABASE_URL
  if [ "$db" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists aspen_link_order' \
      -c 'create database aspen_link_order'
    export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/aspen_link_order
  fi
  "$BIN" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null 2>&1
  local pkjwt tls headless token account
  pkjwt=$("$BIN" clients add --kit "$WORK/kit" 2>/dev/null | sed -n 's/^client_id: //p')
  tls=$("$BIN" clients add --kit "$WORK/kit" --auth-method tls_client_auth 2>/dev/null | sed -n 's/^client_id: //p')
  headless=$("$BIN" clients add --kit "$WORK/kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')
  # A first start seeds the world and migrates: not what a node does at
  # every start, so it runs natively and the profiled start is a warm one.
  "$BIN" serve >/dev/null 2>&1 &
  PID=$!
  wait_up "$PID" "$URL/health" /dev/null
  stop
  valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$OUT/$db.callgrind" "$BIN" serve >/dev/null 2>&1 &
  PID=$!
  WAIT_SECS=300 wait_up "$PID" "$URL/health" /dev/null
  sleep 2
  callgrind_control -d start "$PID" >/dev/null 2>&1
  local drive=(node bench/drive.mjs --url "$URL" --kit "$WORK/kit")
  "${drive[@]}" --scenario pkjwt --client-id "$pkjwt" --n 20 --conns 2 >/dev/null
  "${drive[@]}" --scenario tls --client-id "$tls" --n 20 --conns 2 >/dev/null
  "${drive[@]}" --scenario discovery --n 20 --conns 2 >/dev/null
  "${drive[@]}" --scenario jwks --n 20 --conns 2 >/dev/null
  read -r token account < <("$LOAD" setup-ais --url "$URL" --kit "$WORK/kit" --client-id "$headless")
  # The headless consent grants account and transaction reads.
  for path in accounts "accounts/$account" "accounts/$account/transactions" transactions; do
    "${drive[@]}" --scenario get --bearer="$token" --path "/open-banking/v3.1/aisp/$path" \
      --n 5 --conns 1 >/dev/null
  done
  "$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$headless" --conns 2 --secs 30 \
    --count 6 >/dev/null 2>"$WORK/pis.err" || { cat "$WORK/pis.err" >&2; exit 1; }
  sleep 2
  stop
  rm -rf "$WORK"
  WORK=
}

profile sqlite
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  profile postgres
else
  echo "PostgreSQL does not answer on 127.0.0.1:5432: its start-up and queries are not profiled" >&2
fi

nm --defined-only "$BIN" | awk '$2 ~ /^[tT]$/ {print $3}' >"$OUT/text"
python3 - "$OUT" >"$OUT/order.txt" <<'PY'
import glob, os, re, sys
out = sys.argv[1]
text = set(open(os.path.join(out, "text")).read().split())
def ran(path):
    """Names of the functions with a cost in one callgrind dump."""
    names, hit = {}, set()
    for line in open(path):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, i, name = m.groups()
            if name:
                names[i] = name
            if kind == "fn":
                hit.add(i)
    return {names[i] for i in hit if i in names}
start, later = set(), set()
for path in glob.glob(os.path.join(out, "*.callgrind*")):
    (start if re.search(r"\.callgrind\.\d+$", path) else later).update(ran(path))
start &= text
later = (later & text) - start
print("\n".join(sorted(start) + sorted(later)))
PY
# Start-up alone runs about 4,000: far fewer means a profile went wrong.
n=$(wc -l <"$OUT/order.txt")
if [ "$n" -lt 2000 ]; then
  echo "only $n functions profiled; crates/aspen/link/order.txt left as it was" >&2
  exit 1
fi
mv "$OUT/order.txt" crates/aspen/link/order.txt
echo "crates/aspen/link/order.txt: $n functions" >&2
