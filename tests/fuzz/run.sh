#!/usr/bin/env bash
# A bounded schemathesis run over the official OB v3.1.2 OpenAPI files
# (Account and Transaction, Payment Initiation, Confirmation of Funds, and
# the ASPSP-hosted event APIs: event subscriptions, callback URLs,
# aggregated polling) against a real sandbox aspen.
#
#   bash tests/fuzz/run.sh [ASPEN_BINARY]      (default: target/debug/aspen)
#
# Starts `aspen serve` on a free loopback port with a temporary data
# directory, makes a TPP kit (AISP, PISP and CBPII roles) and a headless
# private_key_jwt client (every scope the roles allow, eventpolling
# included), obtains client-credentials and PSU tokens for authorised AIS,
# PIS and CoF consents, an event subscription and a callback URL, and real
# ids to pin (setup_world.py), then runs schemathesis once per spec with
# ais.toml / pis.toml / cof.toml / events.toml (the three event specs) and
# hooks.py (signed PIS and event-registration bodies, fresh idempotency
# keys, fresh consents for DELETE, one registration per client kept in
# place). The server is stopped on exit.
#
# The specs are read from ../shared/standard/openapi beside the repository,
# as the Rust tests read them; without them the run prints SKIPPED and
# exits 0, unless ASPEN_REQUIRE_FUZZ=1. Python packages (requirements.txt)
# go into target/fuzz-venv.
#
# Knobs: FUZZ_EXAMPLES (fuzzing cases per operation, default 8),
# FUZZ_PHASES (default examples,coverage,fuzzing: the coverage phase's
# deterministic boundary and negative cases are most of the ~5,200
# requests; "examples,fuzzing" sends ~430), FUZZ_SEED
# (default fixed, so that CI runs the same cases each time; "random" for a
# fresh one), FUZZ_PAYMENTS_PROFILE (the server's payments.profile).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
spec_dir="$root/../shared/standard/openapi"
ais_spec="$spec_dir/account-info-openapi.yaml"
pis_spec="$spec_dir/payment-initiation-openapi.yaml"
cof_spec="$spec_dir/confirmation-funds-openapi.yaml"
subscriptions_spec="$spec_dir/event-subscriptions-openapi.yaml"
callbacks_spec="$spec_dir/callback-urls-openapi.yaml"
polling_spec="$spec_dir/aggregated-polling-openapi.yaml"
all_specs=("$ais_spec" "$pis_spec" "$cof_spec" "$subscriptions_spec" "$callbacks_spec" "$polling_spec")
examples=${FUZZ_EXAMPLES:-8}
phases=${FUZZ_PHASES:-examples,coverage,fuzzing}
seed=${FUZZ_SEED:-31205}

skip() {
  if [ "${ASPEN_REQUIRE_FUZZ:-}" = 1 ]; then
    echo "schemathesis run: $* (ASPEN_REQUIRE_FUZZ=1)" >&2
    exit 1
  fi
  echo "SKIPPED: schemathesis run: $*"
  exit 0
}

for f in "${all_specs[@]}"; do
  [ -f "$f" ] || skip "$f not found"
done

bin=${1:-target/debug/aspen}
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
[ -x "$bin" ] || { echo "schemathesis run: no aspen binary at $bin" >&2; exit 1; }

# --- Python environment (reused while requirements.txt is unchanged).
venv="$root/target/fuzz-venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v python3 >/dev/null || skip "python3 not found"
  rm -rf "$venv"
  python3 -m venv "$venv" || skip "python3 -m venv failed"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"; then
    rm -rf "$venv"
    skip "pip install -r tests/fuzz/requirements.txt failed"
  fi
  echo "$want" >"$stamp"
fi
py="$venv/bin/python"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ beside the hooks
st="$venv/bin/schemathesis"

# --- The server.
work=$(mktemp -d "${TMPDIR:-/tmp}/aspen-fuzz.XXXXXX")
server_pid=
cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -f "$work/server.log" ]; then
    # The server log and schemathesis' JUnit reports, for a look afterwards.
    rm -rf "$root/target/fuzz-last"
    mkdir -p "$root/target/fuzz-last"
    cp -r "$work"/server.log "$work"/report-* "$root/target/fuzz-last/" 2>/dev/null || true
    echo "--- aspen server log: target/fuzz-last/server.log (last 15 lines below)" >&2
    grep -v '^ *[0-9]*: \|^ *at ' "$work/server.log" | tail -n 15 >&2 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ASPEN_DATA_DIR="$work/data"
export ASPEN_LISTEN=127.0.0.1:0
export ASPEN_LOG=${ASPEN_LOG:-warn}
unset ASPEN_CONFIG
if [ -n "${FUZZ_PAYMENTS_PROFILE:-}" ]; then
  export ASPEN_PAYMENTS__PROFILE="$FUZZ_PAYMENTS_PROFILE"
fi

started=$SECONDS
"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!

url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^aspen: serving on \(https:[^ ]*\) .*/\1/p' "$work/server.log")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "aspen did not report its address" >&2; exit 1; }
# `/health` over the sandbox CA.
"$py" - "$url" "$ASPEN_DATA_DIR/ca.pem" <<'EOF'
import sys, time, requests
s = requests.Session()
s.trust_env = False
for _ in range(100):
    try:
        if s.get(sys.argv[1] + "/health", verify=sys.argv[2], timeout=2).status_code == 200:
            sys.exit(0)
    except requests.RequestException:
        pass
    time.sleep(0.1)
sys.exit("aspen /health did not answer 200")
EOF
export ASPEN_PUBLIC_URL="$url"
echo "$("$bin" --version 2>/dev/null || echo aspen) on $url"

# --- A TPP kit, a headless client, tokens, consents and ids.
kit="$work/kit"
"$bin" sandbox init --out "$kit" --redirect-uri https://tpp.example.com/cb \
  --org-name "Schemathesis TPP" --client-name schemathesis >/dev/null
client_id=$("$bin" clients add --kit "$kit" --headless 2>/dev/null | sed -n 's/^client_id: //p')
[ -n "$client_id" ] || { echo "aspen clients add printed no client_id" >&2; exit 1; }

export FUZZ_SERVER="$url" FUZZ_KIT="$kit" FUZZ_CA="$kit/ca.pem" FUZZ_CLIENT_ID="$client_id"
export FUZZ_HOOKS="$here/hooks.py" FUZZ_STATS="$work/stats"
(cd "$here" && "$py" setup_world.py "$url" "$kit" "$client_id") >"$work/env.sh"
# shellcheck disable=SC1091
. "$work/env.sh"
echo "setup done in $((SECONDS - started)) s: AIS consent $AIS_CONSENT_ID (account $AIS_ACCOUNT_ID," \
  "statement $AIS_STATEMENT_ID); PIS consents $PIS_DOMESTIC_CONSENT_ID, $PIS_INTERNATIONAL_CONSENT_ID;" \
  "CoF consent $COF_CONSENT_ID; event subscription $EVENT_SUBSCRIPTION_ID, callback URL $CALLBACK_URL_ID"

# --- schemathesis, once per spec. The environment's CA bundle variables
# would replace the sandbox CA in requests; the run's files (reports,
# caches) stay in the temporary directory.
[ "$seed" = random ] && seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
failed=0
run_spec() { # NAME CONFIG SPEC
  local name=$1 config=$2 spec=$3 t0=$SECONDS rc=0
  echo
  echo "== schemathesis: $name ($(basename "$spec"), phases $phases, seed $seed, $examples fuzzing cases per operation)"
  (cd "$work" && env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
    timeout 600 "$st" --config-file "$config" run "$spec" \
    --phases "$phases" --max-examples "$examples" --seed "$seed" \
    --no-color --report junit --report-dir "$work/report-$name") || rc=$?
  echo "== schemathesis: $name exit $rc in $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || failed=1
}
run_spec ais "$here/ais.toml" "$ais_spec"
run_spec pis "$here/pis.toml" "$pis_spec"
run_spec cof "$here/cof.toml" "$cof_spec"
run_spec event-subscriptions "$here/events.toml" "$subscriptions_spec"
run_spec callback-urls "$here/events.toml" "$callbacks_spec"
run_spec events-polling "$here/events.toml" "$polling_spec"

if [ -s "$FUZZ_STATS" ]; then
  echo
  echo "== responses by operation and status"
  "$py" "$here/summary.py" statuses "$FUZZ_STATS" "${all_specs[@]}"
fi
# A panic is a failure even when no response showed it.
if grep -q "panicked at" "$work/server.log"; then
  echo
  echo "== aspen panicked during the run:"
  grep -m 5 "panicked at" "$work/server.log" || true
  failed=1
fi
echo
echo "schemathesis run finished in $((SECONDS - started)) s"
# One test case per operation and spec; a spec whose run broke off counts
# as one failure more.
"$py" "$here/summary.py" junit "$work"/report-* | {
  read -r _ p _ f _
  [ "$failed" = 0 ] || [ "$f" != 0 ] || f=1
  echo "schemathesis: $p passed, $f failed"
}
exit "$failed"
