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
