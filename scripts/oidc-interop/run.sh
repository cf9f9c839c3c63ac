#!/usr/bin/env bash
# Runs social-signin's browser sign-in flow against oidc-provider (provider.mjs), twice,
# with curl playing the browser. See README.md. Exits non-zero on the first failure.
#
# Environment (all optional):
#   API_BIN        the api binary (default: target/debug/api of the workspace, else
#                  /root/.cache/social-signin/target/debug/api)
#   WORK_DIR       where the SQLite file and logs go (default: a fresh mktemp -d)
#   API_PORT       default 18080        OP_PORT          default 3000
#   CLIENT_SECRET  default interop-secret
#   OP_INTERACTIONS  auto (default) or dev (oidc-provider's own login/consent forms)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
API_PORT="${API_PORT:-18080}"
OP_PORT="${OP_PORT:-3000}"
API="http://127.0.0.1:$API_PORT"
OP="http://127.0.0.1:$OP_PORT"
CALLBACK="$API/auth/corp/callback"
CLIENT_SECRET="${CLIENT_SECRET:-interop-secret}"
OP_INTERACTIONS="${OP_INTERACTIONS:-auto}"
CURL=(curl -sS --max-time 20 --noproxy '*')

if [[ -z "${API_BIN:-}" ]]; then
  for candidate in "$ROOT/target/debug/api" "${CARGO_TARGET_DIR:-/nonexistent}/debug/api" \
    /root/.cache/social-signin/target/debug/api; do
    if [[ -x "$candidate" ]]; then API_BIN="$candidate"; break; fi
  done
fi
[[ -n "${API_BIN:-}" && -x "$API_BIN" ]] || { echo "FAIL: no api binary (build it, or set API_BIN)"; exit 2; }
[[ -d "$HERE/node_modules/oidc-provider" ]] || { echo "FAIL: run 'npm install' in $HERE first"; exit 2; }

WORK_DIR="${WORK_DIR:-$(mktemp -d /tmp/oidc-interop.XXXXXX)}"
mkdir -p "$WORK_DIR"
OP_LOG="$WORK_DIR/op.log"
API_LOG="$WORK_DIR/api.log"
OP_PID=""
API_PID=""

for port in "$OP_PORT" "$API_PORT"; do
  if "${CURL[@]}" -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; then
    echo "FAIL: something already listens on 127.0.0.1:$port"; exit 2
  fi
done

stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$API_PID"
  stop_pid "$OP_PID"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "---- last api log lines ($API_LOG) ----"
  tail -n 40 "$API_LOG" 2>/dev/null || true
  echo "---- last op log lines ($OP_LOG) ----"
  tail -n 40 "$OP_LOG" 2>/dev/null || true
  exit 1
}

wait_for() { # url, seconds
  local url="$1" deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    "${CURL[@]}" -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.3
  done
  return 1
}

# A JSON field via node (already required for the OP): json_get FILE EXPR
json_get() { node -e 'const v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const r=(new Function("v","return "+process.argv[2]))(v);process.stdout.write(typeof r==="string"?r:JSON.stringify(r))' "$1" "$2"; }
# One query parameter of a URL: query_param URL NAME (empty when absent)
query_param() { node -e 'const u=new URL(process.argv[1]);process.stdout.write(u.searchParams.get(process.argv[2])??"")' "$1" "$2"; }

echo "== starting oidc-provider on $OP (log: $OP_LOG)"
(cd "$HERE" && OP_PORT="$OP_PORT" OP_CLIENT_SECRET="$CLIENT_SECRET" OP_REDIRECT_URI="$CALLBACK" \
  OP_INTERACTIONS="$OP_INTERACTIONS" exec node provider.mjs) >"$OP_LOG" 2>&1 &
OP_PID=$!
wait_for "$OP/.well-known/openid-configuration" 20 || fail "the OP did not start"

echo "== starting the api on $API (binary: $API_BIN, work dir: $WORK_DIR)"
(cd "$WORK_DIR" && \
  SIGNIN_LISTEN="127.0.0.1:$API_PORT" \
  SIGNIN_METRICS__LISTEN="127.0.0.1:0" \
  SIGNIN_PUBLIC_URL="$API" \
  SIGNIN_DATABASE_URL="sqlite://$WORK_DIR/signin.db?mode=rwc" \
  SIGNIN_PROVIDERS__CORP__KIND=oidc \
  SIGNIN_PROVIDERS__CORP__ISSUER="$OP" \
  SIGNIN_PROVIDERS__CORP__CLIENT_ID=signin \
  SIGNIN_PROVIDERS__CORP__CLIENT_SECRET="$CLIENT_SECRET" \
  exec "$API_BIN") >"$API_LOG" 2>&1 &
API_PID=$!
wait_for "$API/api/providers" 60 || fail "the api did not start"
echo "   providers: $("${CURL[@]}" "$API/api/providers")"

# One whole sign-in in a fresh browser (cookie jar). Prints each step; leaves the
# /api/me JSON in $WORK_DIR/me-$1.json.
run_flow() {
  local run="$1" jar="$WORK_DIR/cookies-$1.txt" out="$WORK_DIR/body-$1" code location
  rm -f "$jar"
  local c=("${CURL[@]}" -b "$jar" -c "$jar" -o "$out" -w '%{http_code} %{redirect_url}')
  # req ARGS...: one request with this run's cookie jar; sets $code and $location.
  req() {
    local r
    r="$("${c[@]}" "$@")" || fail "request failed: curl ${*: -1}"
    code="${r%% *}"
    location="${r#* }"
  }
  echo "== run $run"

  # 1. login -> 303 to the authorize endpoint
  req "$API/auth/corp/login"
  echo "1. GET /auth/corp/login -> $code ${location%%\?*}"
  [[ "$code" == 303 && "$location" == "$OP/auth?"* ]] || fail "login: expected 303 to $OP/auth, got $code $location"
  local expect
  for expect in "response_type=code" "client_id=signin" "redirect_uri=$CALLBACK" \
    "scope=openid email profile" "code_challenge_method=S256"; do
    [[ "$(query_param "$location" "${expect%%=*}")" == "${expect#*=}" ]] \
      || fail "authorize URL: expected $expect, got ${expect%%=*}=$(query_param "$location" "${expect%%=*}")"
  done
  local sent_state
  sent_state="$(query_param "$location" state)"
  for p in state code_challenge nonce; do
    [[ -n "$(query_param "$location" "$p")" ]] || fail "authorize URL has no $p"
  done
  echo "   authorize URL has response_type, client_id, redirect_uri, scope, state, S256 code_challenge, nonce"

  # 2. at the provider: follow its redirects (login, consent) until it sends us back
  local hops=0
  while [[ "$location" == "$OP/"* ]]; do
    hops=$((hops + 1))
    ((hops <= 12)) || fail "more than 12 redirects at the provider"
    req "$location"
    if [[ "$OP_INTERACTIONS" == dev && "$code" == 200 && -z "$location" ]]; then
      # oidc-provider's dev forms: the login form, then the consent form, both
      # posted to the interaction's submit URL.
      local action
      action="$(grep -o '<form[^>]*action="[^"]*"' "$out" | head -1 | sed 's/.*action="//; s/"$//')" || true
      [[ -n "$action" ]] || fail "unexpected provider page: $(head -c 400 "$out")"
      [[ "$action" == /* ]] && action="$OP$action"
      if grep -q 'name="prompt" value="login"' "$out"; then
        echo "2. provider login form: POST ${action#"$OP"}"
        req -X POST --data-urlencode "prompt=login" --data-urlencode "login=interop-user-1" \
          --data-urlencode "password=x" "$action"
      elif grep -q 'name="prompt" value="consent"' "$out"; then
        echo "2. provider consent form: POST ${action#"$OP"}"
        req -X POST --data-urlencode "prompt=consent" "$action"
      else
        fail "unexpected provider form: $(head -c 400 "$out")"
      fi
    fi
    echo "2. provider -> $code ${location%%\?*}"
    [[ "$code" == 30[23] ]] || fail "provider answered $code: $(head -c 600 "$out")"
  done
  [[ "$location" == "$CALLBACK?"* ]] || fail "the provider did not redirect to the callback: $location"
  [[ -z "$(query_param "$location" error)" ]] \
    || fail "the provider returned error=$(query_param "$location" error) ($(query_param "$location" error_description))"
  [[ -n "$(query_param "$location" code)" ]] || fail "no code in the callback URL"
  [[ "$(query_param "$location" state)" == "$sent_state" ]] || fail "the provider changed the state"
  echo "   callback carries code, state, iss=$(query_param "$location" iss)"

  # 3. callback -> 303 /auth/preloader?operation=ID
  req "$location"
  echo "3. GET /auth/corp/callback -> $code ${location#"$API"}"
  [[ "$code" == 303 && "$location" == "$API/auth/preloader?operation="* ]] \
    || fail "callback: expected 303 /auth/preloader?operation=ID, got $code $location: $(head -c 600 "$out")"
  req "$location"
  [[ "$code" == 200 ]] || fail "preloader answered $code"

  # 4. long-poll the status (at most 6 x 10 s)
  local status="pending" polls=0
  while [[ "$status" == pending ]]; do
    polls=$((polls + 1))
    ((polls <= 6)) || fail "still pending after 6 polls"
    req "$API/auth/status?wait=10"
    [[ "$code" == 200 ]] || fail "status answered $code: $(cat "$out")"
    status="$(json_get "$out" 'v.status')"
    echo "4. GET /auth/status?wait=10 -> $code $(cat "$out")"
  done
  [[ "$status" == ok ]] || fail "sign-in ended in $status: $(cat "$out")"

  # 5. success -> 303 / with a session; /api/me
  req "$API/auth/success"
  echo "5. GET /auth/success -> $code ${location#"$API"}"
  [[ "$code" == 303 && "$location" == "$API/" ]] || fail "success: expected 303 /, got $code $location"
  grep -q signin_session "$jar" || fail "no session cookie after /auth/success"
  req "$API/api/me"
  echo "   GET /api/me -> $code $(cat "$out")"
  [[ "$code" == 200 ]] || fail "/api/me answered $code"
  cp "$out" "$WORK_DIR/me-$run.json"
  local check
  for check in 'v.email==="interop@example.com"' 'v.email_verified===true' \
    'v.first_name==="Inter"' 'v.last_name==="Op"' 'v.display_name==="Inter Op"' \
    'JSON.stringify(v.providers)==="[\"corp\"]"' 'typeof v.id==="string"&&v.id.length>0'; do
    [[ "$(json_get "$out" "$check")" == true ]] || fail "/api/me: expected $check"
  done
  echo "   /api/me has the account's email (verified), names and providers [\"corp\"]"
}

run_flow 1
run_flow 2
id1="$(json_get "$WORK_DIR/me-1.json" v.id)"
id2="$(json_get "$WORK_DIR/me-2.json" v.id)"
[[ "$id1" == "$id2" ]] || fail "the second sign-in made another user ($id2, first was $id1)"
echo "== same user both times: $id1"
echo "== token requests as the OP saw them:"
grep -E 'POST /token|grant\.(success|error)' "$OP_LOG" | sed 's/^/   /' || true
if grep -qE 'event .*error' "$OP_LOG"; then
  echo "== the OP logged errors:"; grep -E 'event .*error' "$OP_LOG" | sed 's/^/   /'
fi
echo "PASS: social-signin signed in through oidc-provider twice (logs in $WORK_DIR)"
