#!/usr/bin/env bash
# Where a domestic payment's CPU goes (issue 15, goal 4): server CPU per
# order for aspen and for PostgreSQL's processes, over the timed phase of
# one `load pis` level, and on PostgreSQL what the database did per order
# in that phase (pg_stat_database and pg_stat_user_tables deltas).
#   cargo build --release -p aspen && cargo build --release -p aspen --example load
#   bench/pis-cpu.sh sqlite|postgres [aspen binary]
# Environment: CONNS (16), COUNT (orders prepared, 8000), SECS (8).
# The load generator prepares and signs every order first (`--wait 1`);
# the counters are read when it says `ready` and after its last answer,
# each with a second's pause so that PostgreSQL's statistics, which its
# backends report at most once a second, hold the whole phase. Neither
# process is pinned: the figure is CPU per order, not a rate.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DB=${1:-postgres}
BIN=${2:-target/release/aspen}
LOAD=${LOAD:-target/release/examples/load}
PORT=${PORT:-18753}
URL=https://127.0.0.1:$PORT
WORK=$(mktemp -d)
PID= LP=
trap 'end_procs "$LP"; stop; rm -rf "$WORK"' EXIT
export ASPEN_DATA_DIR=$WORK/data ASPEN_LISTEN=127.0.0.1:$PORT ASPEN_LOG=${ASPEN_LOG:-info}
export ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=256
PGDB=aspen_pis_cpu
fresh_db "$DB" "$PGDB"
serve_headless "$BIN"

hz=$(getconf CLK_TCK)
# utime + stime of the processes named, those gone counting nothing.
ticks() {
  local s=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$s"
}
postgres_pids() { pgrep -u postgres || true; }
pg_snapshot() {
  [ "$DB" = postgres ] || return 0
  psql -qAt -h 127.0.0.1 -U postgres -d "$PGDB" -c "
    SELECT 'database', xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated, blks_hit
      FROM pg_stat_database WHERE datname = '$PGDB'
    UNION ALL
    SELECT relname, coalesce(idx_scan, 0), seq_scan, seq_tup_read, n_tup_ins, n_tup_upd, n_tup_hot_upd
      FROM pg_stat_user_tables ORDER BY 1" >"$1"
}

mkfifo "$WORK/go"
"$LOAD" pis --url "$URL" --kit "$WORK/kit" --client-id "$HCLIENT" --conns "${CONNS:-16}" \
  --secs "${SECS:-8}" --count "${COUNT:-8000}" --wait 1 <"$WORK/go" >"$WORK/out" 2>"$WORK/err" &
LP=$!
exec 3>"$WORK/go"
deadline=$((SECONDS + 600))
until grep -q '^ready' "$WORK/err"; do
  kill -0 "$LP" 2>/dev/null || { cat "$WORK/err" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "bench/pis-cpu.sh: orders not prepared in 600 s" >&2; exit 1; }
  sleep 0.2
done
sleep 1
pg_snapshot "$WORK/s0"
a0=$(ticks "$PID") p0=$(ticks $(postgres_pids)) t0=$(date +%s.%N)
echo >&3
wait "$LP" || true
LP=
a1=$(ticks "$PID") p1=$(ticks $(postgres_pids)) t1=$(date +%s.%N)
sleep 1
pg_snapshot "$WORK/s1"
cat "$WORK/out"
n=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$WORK/out")
awk -v n="$n" -v a=$((a1 - a0)) -v p=$((p1 - p0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN {
  w = t1 - t0
  printf "CPU per order over %.1f s: aspen %.0f us, PostgreSQL %.0f us (aspen %.0f%%, PostgreSQL %.0f%% of a core)\n",
    w, a / hz / n * 1e6, p / hz / n * 1e6, 100 * a / hz / w, 100 * p / hz / w }'
if [ "$DB" = postgres ]; then
  echo "per order in that phase (database: commits, tuples returned, fetched, inserted, updated, buffer hits;"
  echo "tables: index scans, seq scans, tuples seq-read, inserted, updated, HOT-updated):"
  join -t'|' "$WORK/s0" "$WORK/s1" | awk -F'|' -v n="$n" '{
    line = sprintf("%-20s", $1); any = 0
    for (i = 2; i <= 7; i++) { d = ($(i + 6) - $i) / n; if (d > 0.001) any = 1; line = line sprintf(" %7.2f", d) }
    if (any) print line }'
fi
