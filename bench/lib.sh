# Sourced by the bench scripts.

# wait_up PID URL LOG [curl option ...]: until URL answers. Each try is
# bounded to 5 s; the wait gives up when PID exits or after WAIT_SECS
# (60 by default; a server under valgrind may need more), and then shows
# the end of LOG and exits.
wait_up() {
  local pid=$1 url=$2 log=$3
  shift 3
  local deadline=$((SECONDS + ${WAIT_SECS:-60}))
  until curl -fsk --max-time 5 "$@" "$url" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "$0: the server did not answer $url (it exited, or ${WAIT_SECS:-60} s passed); the end of its log:" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
}

# end_procs PID...: ends each process given (empty ones skipped) and waits
# for it. A process ended by the signal exits non-zero; under `set -e` that
# must not end the script (the last `stop` of a run ended it with 143).
end_procs() {
  local p
  for p in "$@"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# stop: ends the server started as $PID.
stop() { end_procs "${PID:-}"; PID=; }

# fresh_db sqlite|postgres NAME: on PostgreSQL, an empty database NAME for
# aspen (ASPEN_DATABASE_URL); on SQLite nothing (the file is in the data
# directory).
fresh_db() {
  [ "$1" = postgres ] || return 0
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $2" -c "create database $2"
  export ASPEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$2
}

# serve_headless BIN: a sandbox kit in $WORK/kit with a headless client
# ($HCLIENT), and BIN serving it as $PID, answering at $URL.
serve_headless() {
  "$1" sandbox init --out "$WORK/kit" --redirect-uri https://bench.example.com/cb >/dev/null 2>&1
  HCLIENT=$("$1" clients add --kit "$WORK/kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')
  "$1" serve >"$WORK/serve.out" 2>"$WORK/serve.log" &
  PID=$!
  wait_up "$PID" "$URL/health" "$WORK/serve.log"
}
