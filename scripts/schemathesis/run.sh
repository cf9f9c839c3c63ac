#!/usr/bin/env bash
# Runs schemathesis against a fresh api with a signed-in bearer token, so a drift
# between the OpenAPI document and what the server answers fails CI. See README.md.
#
#   SIGNIN_API_BIN   the api binary (default: $CARGO_TARGET_DIR/debug/api, else target/debug/api)
#   SCHEMATHESIS     the schemathesis command (default: schemathesis on PATH)
#   ST_MAX_EXAMPLES  examples per operation (default 40)
#   ST_MAX_TIME      time budget of the run in seconds (default 240)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
api_bin="${SIGNIN_API_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/api}"
schemathesis="${SCHEMATHESIS:-schemathesis}"
work="$(mktemp -d /tmp/signin-schemathesis.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

cleanup() {
  if [[ -n "${api_pid:-}" ]]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Only our settings: the demo provider, SQLite in the work dir, limits that a fuzzer
# from one address does not trip (429 is a documented answer, but it would hide
# every other check behind it).
env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn NO_COLOR=1 \
  SIGNIN_LISTEN="127.0.0.1:$port" SIGNIN_PUBLIC_URL="$base" \
  SIGNIN_METRICS__LISTEN=127.0.0.1:0 \
  SIGNIN_DATABASE_URL="sqlite://$work/signin.db?mode=rwc" \
  SIGNIN_SECRET_KEY="schemathesis-secret-key-0123456789abcdef" \
  SIGNIN_PROVIDERS__DEMO__KIND=demo \
  SIGNIN_LIMITS__LOGIN_PER_IP_PER_MINUTE=100000 \
  SIGNIN_LIMITS__LOGIN_PER_ACCOUNT_PER_HOUR=100000 \
  SIGNIN_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE=0 \
  SIGNIN_LIMITS__NATIVE_SIGN_INS_PER_IP_PER_MINUTE=0 \
  SIGNIN_LIMITS__STATUS_POLLS_PER_IP_PER_MINUTE=0 \
  SIGNIN_LIMITS__PENDING_OPERATIONS_PER_IP=0 \
  "$api_bin" >"$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 150); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

# A signed-in user; a second session is what the fuzzer may revoke by id.
token="$(curl -fsS "$base/api/auth/register" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"violet-lantern-harbor-42"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

# Routes that end the token's own session (logout, revoking sessions, changing the
# password) would sign the rest of the run out: they are left to the Rust tests.
# From the work dir: schemathesis keeps its example cache in the current directory.
cd "$work"
timeout "$(( ${ST_MAX_TIME:-240} + 60 ))" "$schemathesis" --config-file "$here/schemathesis.toml" \
  run "$base/api/openapi.json" \
  --phases examples,coverage,fuzzing \
  -H "Authorization: Bearer $token" \
  --exclude-path /api/auth/logout \
  --exclude-path-regex '^/api/sessions' \
  --exclude-path /api/me/password \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --max-time "${ST_MAX_TIME:-240}" \
  --seed 1 \
  --generation-deterministic \
  --no-color \
  --warnings off \
  "$@"
