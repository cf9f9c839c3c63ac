#!/usr/bin/env bash
# What an access token's signature algorithm costs per bearer request: starts the
# release api (SQLite, demo provider) with tokens.algorithm $1, registers a user,
# runs wrk on GET /api/me with its bearer token for 10 s over 16 connections, and
# prints requests/s and the api's CPU per request (from /proc).
#   cargo build --release -p api && bash scripts/bearer_ab.sh HS256 && bash scripts/bearer_ab.sh EdDSA
set -euo pipefail
alg="$1"; bin="${SIGNIN_API_BIN:-target/release/api}"
work=$(mktemp -d); port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOME="$HOME" RUST_LOG=info SIGNIN_LISTEN=127.0.0.1:$port SIGNIN_PUBLIC_URL=http://127.0.0.1:$port \
  SIGNIN_METRICS__LISTEN=127.0.0.1:0 SIGNIN_DATABASE_URL="sqlite://$work/s.db?mode=rwc" \
  SIGNIN_SECRET_KEY=bench-secret-key-0123456789abcdef0123 SIGNIN_PROVIDERS__DEMO__KIND=demo \
  SIGNIN_TOKENS__ALGORITHM=$alg SIGNIN_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE=0 \
  "$bin" > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
token=$(curl -fsS http://127.0.0.1:$port/api/auth/register -H 'content-type: application/json' \
  -d '{"email":"b@example.com","password":"violet-lantern-harbor-42"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
ticks() { awk '{print $14+$15}' /proc/$pid/stat; }
t0=$(ticks)
out=$(wrk -t1 -c16 -d10s -H "Authorization: Bearer $token" http://127.0.0.1:$port/api/me)
t1=$(ticks)
reqs=$(echo "$out" | awk '/requests in/{print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
hz=$(getconf CLK_TCK)
python3 -c "print(f'$alg: {float(\"$rps\"):.0f} req/s, api CPU {($t1-$t0)/$hz*1e6/$reqs:.1f} us/request over $reqs requests')"
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$work"
