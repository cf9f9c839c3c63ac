#!/usr/bin/env bash
# The production layout, for real, on one machine: nginx (deploy/nginx/social-signin.conf)
# in front of two `api` instances, two `worker` processes, one PostgreSQL database and
# one Redis database; then checks.mjs runs its checks against it (see README.md here).
#
# Everything listens on 127.0.0.1 on ports picked at random. The database and the
# Redis database are made for this run and dropped / flushed at exit; every process
# is stopped at exit; every wait is bounded. Logs stay in the work dir it prints.
#
# Environment (all optional):
#   SIGNIN_API_BIN, SIGNIN_WORKER_BIN   the binaries (default $CARGO_TARGET_DIR/debug/{api,worker},
#                                       $CARGO_TARGET_DIR defaulting to <repo>/target)
#   CHROMIUM_BIN                        default /usr/bin/chromium
#   MULTI_BURST                         sign-ins of the crash burst (default 40)
#   MULTI_REGISTRATION_BUDGET           limits.registrations_per_ip_per_minute of the run (default 4)
#   MULTI_TIMEOUT_S                     bound on the checks (default 200)
#   MULTI_TOKEN_RATE                    demo token requests nginx lets through per second (default 20)
#   MULTI_BENCH                         benchmark instead of checking: the signin_bench binary and
#                                       its arguments, run with --url (nginx) and a --watch per process;
#                                       per-IP budgets off, token rate unlimited (docs/benchmarks.md)
#   MULTI_APIS, MULTI_WORKERS           with MULTI_BENCH: api instances (1 or 2) and workers (default 2, 2)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
API_BIN="${SIGNIN_API_BIN:-$TARGET_DIR/debug/api}"
WORKER_BIN="${SIGNIN_WORKER_BIN:-$TARGET_DIR/debug/worker}"
CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
BURST="${MULTI_BURST:-40}"
BUDGET="${MULTI_REGISTRATION_BUDGET:-4}"
TIMEOUT_S="${MULTI_TIMEOUT_S:-200}"
TOKEN_RATE="${MULTI_TOKEN_RATE:-20}"
BENCH="${MULTI_BENCH:-}"
APIS=2
WORKERS=2
if [[ -n "$BENCH" ]]; then
  APIS="${MULTI_APIS:-2}"
  WORKERS="${MULTI_WORKERS:-2}"
  TOKEN_RATE=100000
fi
[[ "$APIS" == 1 || "$APIS" == 2 ]] || { echo "MULTI_APIS: 1 or 2" >&2; exit 2; }
[[ "$WORKERS" =~ ^[1-8]$ ]] || { echo "MULTI_WORKERS: 1 to 8" >&2; exit 2; }
SITE_CONF="$ROOT/deploy/nginx/social-signin.conf"
NGINX_BIN=/usr/sbin/nginx
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres)
REDIS=(redis-cli -h 127.0.0.1 -p 6379)
export PGCONNECT_TIMEOUT=5

started=$SECONDS
say() { printf '[multi %3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { say "FAIL: $*"; exit 1; }

[[ -x "$API_BIN" ]] || die "no api binary at $API_BIN (cargo build -p api, or set SIGNIN_API_BIN)"
[[ -x "$WORKER_BIN" ]] || die "no worker binary at $WORKER_BIN (cargo build -p worker, or set SIGNIN_WORKER_BIN)"
[[ -x "$CHROMIUM_BIN" ]] || die "no Chromium at $CHROMIUM_BIN (apt-get install chromium)"
[[ -d "$ROOT/scripts/e2e/node_modules/playwright-core" ]] \
  || die "playwright-core is missing: (cd scripts/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)"
command -v node >/dev/null || die "node (20 or later) is required"
command -v psql >/dev/null || die "psql is required"
command -v redis-cli >/dev/null || die "redis-cli is required"

# nginx from Debian's package when it is missing, as .ci/run does for Chromium. Only the
# binary is used: the package's own configuration and service are left alone.
if [[ ! -x "$NGINX_BIN" ]]; then
  say "installing Debian's nginx"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq nginx >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq nginx >/dev/null || true
  fi
  [[ -x "$NGINX_BIN" ]] || die "nginx is missing and apt-get could not install it"
fi

# ---- state and cleanup ------------------------------------------------------------

WORK="$(mktemp -d /tmp/signin-multi.XXXXXX)"
chmod 711 "$WORK" # nginx may run as nobody (below): it must reach its own directory
declare -A PID=()  # role -> pid
ROLES=()           # start order
DB_NAME=""
REDIS_DB=""
CHECKS_PID=""
STATUS=1

stop_pid() { # pid: SIGTERM, up to 15 s, then SIGKILL
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local role
  trap - EXIT INT TERM
  [[ -n "$CHECKS_PID" ]] && stop_pid "$CHECKS_PID"
  # nginx first (no new requests), then the apis, then the workers.
  [[ -n "${PID[nginx]:-}" ]] && stop_pid "${PID[nginx]}"
  for role in "${ROLES[@]}"; do
    [[ "$role" != nginx ]] && stop_pid "${PID[$role]}"
  done
  if [[ -n "$DB_NAME" ]]; then
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 \
      || say "could not drop database $DB_NAME"
  fi
  if [[ -n "$REDIS_DB" ]]; then
    "${REDIS[@]}" -n "$REDIS_DB" FLUSHDB >/dev/null 2>&1 || say "could not flush Redis database $REDIS_DB"
  fi
  if ((STATUS != 0)); then
    for role in "${ROLES[@]}"; do
      local log="$WORK/$role.log"
      [[ "$role" == nginx ]] && log="$WORK/nginx/logs/error.log"
      echo "---- last lines of $log ----"
      tail -n 25 "$log" 2>/dev/null || true
    done
  fi
  say "logs: $WORK"
  exit "$STATUS"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# Only this run's settings reach the processes: a developer's or CI's SIGNIN_* (a
# real provider, another database) must not leak in.
UNSET_ENV=()
while IFS= read -r name; do UNSET_ENV+=(-u "$name"); done < <(compgen -e | grep '^SIGNIN_' || true)

start() { # role binary VAR=value...: starts a process, its output in $WORK/<role>.log
  local role="$1" bin="$2"
  shift 2
  (cd "$WORK" && exec env "${UNSET_ENV[@]}" "${COMMON_ENV[@]}" "$@" "$bin") >"$WORK/$role.log" 2>&1 &
  PID[$role]=$!
  ROLES+=("$role")
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

# api listens on port 0 (no race for a port) and logs "api listening address=…".
wait_api() { # role: sets API_URL=http://127.0.0.1:PORT once /readyz answers 200 (60 s at most)
  local role="$1" deadline=$((SECONDS + 60)) address=""
  while ((SECONDS < deadline)); do
    alive "$role" || die "$role exited during start-up"
    if [[ -z "$address" ]]; then
      address="$(grep -m1 -o 'api listening address=[0-9.:]*' "$WORK/$role.log" 2>/dev/null | sed 's/.*address=//' || true)"
    fi
    if [[ -n "$address" ]] \
      && [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$address/readyz" || true)" == 200 ]]; then
      API_URL="http://$address"
      return 0
    fi
    sleep 0.2
  done
  die "$role did not answer 200 on /readyz within 60 s"
}

wait_worker() { # role: its "worker started" line (60 s at most)
  local role="$1" deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    alive "$role" || die "$role exited during start-up"
    grep -q 'worker started' "$WORK/$role.log" 2>/dev/null && return 0
    sleep 0.2
  done
  die "$role did not log 'worker started' within 60 s"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- PostgreSQL and Redis ------------------------------------------------------------

"${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL does not answer on 127.0.0.1:5432 as user postgres"
DB_NAME="signin_multi_$$_$RANDOM"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB_NAME" >/dev/null || { DB_NAME=""; die "CREATE DATABASE failed"; }
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB_NAME"
say "PostgreSQL database $DB_NAME"

[[ "$("${REDIS[@]}" PING 2>/dev/null)" == PONG ]] || die "Redis does not answer on 127.0.0.1:6379"
# A database of its own: an empty one other than 0, picked at random.
databases="$("${REDIS[@]}" CONFIG GET databases 2>/dev/null | sed -n 2p)"
[[ "$databases" =~ ^[0-9]+$ ]] && ((databases > 1)) || databases=16
for _ in $(seq 1 $((databases * 2))); do
  candidate=$((1 + RANDOM % (databases - 1)))
  if [[ "$("${REDIS[@]}" -n "$candidate" DBSIZE)" == 0 ]]; then REDIS_DB="$candidate"; break; fi
done
[[ -n "$REDIS_DB" ]] || die "no empty Redis database among 1..$((databases - 1))"
"${REDIS[@]}" -n "$REDIS_DB" FLUSHDB >/dev/null
REDIS_URL="redis://127.0.0.1:6379/$REDIS_DB"
say "Redis database $REDIS_DB"

# ---- the processes -------------------------------------------------------------------

NGINX_PORT=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! port_in_use "$candidate"; then NGINX_PORT="$candidate"; break; fi
done
[[ -n "$NGINX_PORT" ]] || die "no free port for nginx after 50 tries"
PUBLIC_URL="http://127.0.0.1:$NGINX_PORT"

COMMON_ENV=(
  SIGNIN_DATABASE_URL="$DATABASE_URL"
  SIGNIN_REDIS_URL="$REDIS_URL"
  SIGNIN_SECRET_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
  SIGNIN_PUBLIC_URL="$PUBLIC_URL"
  SIGNIN_TRUSTED_PROXIES='[127.0.0.1]'
  SIGNIN_WORKER__EMBEDDED=false
  SIGNIN_PROVIDERS__DEMO__KIND=demo
  # The budget check (c): small, so that 2 x budget requests cross it.
  SIGNIN_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE="$BUDGET"
  # The local server's max_connections is shared with whatever else runs on it;
  # a production deployment keeps the default pool sizes.
  SIGNIN_DATABASE__MAX_CONNECTIONS=10
  RUST_LOG="${RUST_LOG:-info}"
  NO_COLOR=1
)
if [[ -n "$BENCH" ]]; then
  # Every virtual browser of the benchmark comes from 127.0.0.1: the per-IP budgets
  # are off, as in signin_bench --spawn and ../shared/perf; the pools keep their
  # default sizes.
  COMMON_ENV+=(
    SIGNIN_LIMITS__SIGN_IN_STARTS_PER_IP_PER_MINUTE=0
    SIGNIN_LIMITS__CALLBACKS_PER_IP_PER_MINUTE=0
    SIGNIN_LIMITS__STATUS_POLLS_PER_IP_PER_MINUTE=0
    SIGNIN_LIMITS__PENDING_OPERATIONS_PER_IP=0
  )
  # The product's pool sizes (16 per api, 20 per worker) instead of the checks' 10.
  for i in "${!COMMON_ENV[@]}"; do
    [[ "${COMMON_ENV[$i]}" == SIGNIN_DATABASE__MAX_CONNECTIONS=* ]] && unset 'COMMON_ENV[i]'
  done
fi

say "api: $API_BIN"
say "worker: $WORKER_BIN"
# Both apis migrate at start; the first is ready (migrated) before the second starts.
start api1 "$API_BIN" SIGNIN_LISTEN=127.0.0.1:0 SIGNIN_METRICS__LISTEN=127.0.0.1:0
wait_api api1
API1_URL="$API_URL"
say "api1 ready on $API1_URL (pid ${PID[api1]})"
API2_URL="$API1_URL" # one instance: both upstream lines name it
if ((APIS == 2)); then
  start api2 "$API_BIN" SIGNIN_LISTEN=127.0.0.1:0 SIGNIN_METRICS__LISTEN=127.0.0.1:0
  wait_api api2
  API2_URL="$API_URL"
  say "api2 ready on $API2_URL (pid ${PID[api2]})"
fi
for n in $(seq 1 "$WORKERS"); do
  start "worker$n" "$WORKER_BIN" SIGNIN_WORKER__METRICS_LISTEN=127.0.0.1:0
done
for n in $(seq 1 "$WORKERS"); do
  wait_worker "worker$n"
  say "worker$n started (pid ${PID[worker$n]})"
done

# nginx: the operators' site file, with only its `# ci:` lines rewritten.
NGX="$WORK/nginx"
mkdir -p "$NGX/logs" "$NGX/tmp"
awk -v listen="127.0.0.1:$NGINX_PORT" -v a1="${API1_URL#http://}" -v a2="${API2_URL#http://}" '
  /# ci: drop$/ { next }
  /# ci: listen$/ { sub(/listen [^;]*;/, "listen " listen ";"); sub(/[ \t]*# ci: listen$/, ""); print; n_listen++; next }
  /# ci: server_name$/ { sub(/server_name [^;]*;/, "server_name 127.0.0.1;"); sub(/[ \t]*# ci: server_name$/, ""); print; n_name++; next }
  /# ci: api$/ { n_api++; addr = (n_api == 1 ? a1 : a2); sub(/server [^ ;]+/, "server " addr); sub(/[ \t]*# ci: api$/, ""); print; next }
  /# ci: [a-z_]+$/ { print "unknown ci marker: " $0 > "/dev/stderr"; exit 3 }
  { print }
  END { if (n_listen != 1 || n_name != 1 || n_api != 2) { print "expected 1 listen, 1 server_name and 2 api lines marked, found " n_listen + 0 ", " n_name + 0 ", " n_api + 0 > "/dev/stderr"; exit 3 } }
' "$SITE_CONF" >"$NGX/social-signin.conf" || die "cannot derive the CI site from $SITE_CONF"
cat >"$NGX/nginx.conf" <<EOF
# Generated by scripts/multi-instance/run.sh: a private nginx around the site file.
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log notice;
events { worker_connections 1024; }
http {
    access_log $NGX/logs/access.log combined;
    client_body_temp_path $NGX/tmp/client_body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    default_type application/octet-stream;
    # Test only, outside the site file: the demo provider's token endpoint answers
    # ${TOKEN_RATE} requests a second at most, the rest wait their turn in nginx, like
    # a provider with latency. So when the crash burst kills a worker, some of its
    # jobs have their token request in flight (the exchange_interrupted path), however
    # fast the build. Inherited by the site's location; every other URI has an empty
    # key and is not limited.
    map \$uri \$signin_demo_token {
        /demo-provider/token demo-token;
        default "";
    }
    limit_req_zone \$signin_demo_token zone=signin_demo_token:1m rate=${TOKEN_RATE}r/s;
    limit_req zone=signin_demo_token burst=1000;
    limit_req_status 503;
    include $NGX/social-signin.conf;
}
EOF
NGINX=("$NGINX_BIN" -p "$NGX" -e "$NGX/logs/error.log" -c "$NGX/nginx.conf")
if ((EUID == 0)); then
  # Unprivileged: as nobody, owning only its own directory. (Without setpriv the
  # master stays root and its worker runs as nobody: the directory is theirs too.)
  chown -R 65534:65534 "$NGX"
  if command -v setpriv >/dev/null; then
    NGINX=(setpriv --reuid=65534 --regid=65534 --clear-groups "${NGINX[@]}")
  fi
fi
"${NGINX[@]}" -t -q || die "nginx -t refused $NGX/nginx.conf"
(exec "${NGINX[@]}" -g 'daemon off;' >"$WORK/nginx.log" 2>&1) &
PID[nginx]=$!
ROLES+=(nginx)
deadline=$((SECONDS + 20))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PUBLIC_URL/readyz" || true)" == 200 ]]; do
  alive nginx || die "nginx exited during start-up (port $NGINX_PORT taken?)"
  ((SECONDS < deadline)) || die "nginx did not answer 200 on $PUBLIC_URL/readyz within 20 s"
  sleep 0.2
done
say "nginx on $PUBLIC_URL (pid ${PID[nginx]}), site $NGX/social-signin.conf"

# ---- the benchmark (MULTI_BENCH) -------------------------------------------------------

if [[ -n "$BENCH" ]]; then
  WATCH=()
  for role in "${ROLES[@]}"; do WATCH+=(--watch "$role=${PID[$role]}"); done
  postmaster="$(head -n1 "$("${PSQL[@]}" -d postgres -c 'SHOW data_directory')/postmaster.pid" 2>/dev/null || true)"
  [[ "$postmaster" =~ ^[0-9]+$ ]] && WATCH+=(--watch "postgres=$postmaster")
  say "benchmark: $BENCH --url $PUBLIC_URL (${APIS} api, ${WORKERS} workers)"
  # shellcheck disable=SC2086 # MULTI_BENCH is a command line
  timeout --kill-after=10 "$TIMEOUT_S" $BENCH --url "$PUBLIC_URL" "${WATCH[@]}" && STATUS=0
  exit "$STATUS"
fi

# ---- the checks ----------------------------------------------------------------------

# In the background, so that a signal to this script is acted on at once (the trap
# stops the checks too).
MI_NGINX_URL="$PUBLIC_URL" MI_API1_URL="$API1_URL" MI_API2_URL="$API2_URL" \
  MI_API2_PID="${PID[api2]}" MI_WORKER1_PID="${PID[worker1]}" \
  MI_DATABASE_URL="$DATABASE_URL" MI_REDIS_URL="$REDIS_URL" \
  MI_REGISTRATION_BUDGET="$BUDGET" MI_BURST="$BURST" MI_OUT_DIR="$WORK" \
  CHROMIUM_BIN="$CHROMIUM_BIN" \
  timeout --kill-after=10 "$TIMEOUT_S" node "$HERE/checks.mjs" &
CHECKS_PID=$!
# (stderr of `wait` only: bash would report there each process the checks SIGKILLed.)
{ wait "$CHECKS_PID"; } 2>/dev/null && checks=0 || checks=$?
CHECKS_PID=""
((checks == 124 || checks == 137)) && say "FAIL: the checks took longer than $TIMEOUT_S s"

# The crash burst SIGKILLs api2 and worker1: collect them, quietly.
for role in api2 worker1; do
  if ! alive "$role"; then
    { wait "${PID[$role]}"; } 2>/dev/null && rc=0 || rc=$?
    say "$role is gone (exit status $rc; the crash burst SIGKILLs it)"
  fi
done

# The processes the checks did not kill must have lived through everything, and stop
# on SIGTERM (what systemd sends) well within TimeoutStopSec.
survivors=0
for role in api1 worker2 nginx; do
  if alive "$role"; then
    say "PASS $role still running after the checks"
  else
    say "FAIL $role died during the checks"
    survivors=1
  fi
done
for role in api1 worker2; do
  alive "$role" || continue
  t0=$SECONDS
  kill -TERM "${PID[$role]}"
  for _ in $(seq 1 100); do alive "$role" || break; sleep 0.2; done
  if alive "$role"; then
    say "FAIL $role did not stop within 20 s of SIGTERM"
    survivors=1
  else
    wait "${PID[$role]}" && rc=0 || rc=$?
    if ((rc == 0)); then
      say "PASS $role stopped on SIGTERM in $((SECONDS - t0)) s, exit status 0"
    else
      say "FAIL $role exited with status $rc after SIGTERM"
      survivors=1
    fi
  fi
done

if ((checks == 0 && survivors == 0)); then
  STATUS=0
  say "multi-instance: all checks passed"
else
  say "multi-instance: FAILED (checks exit status $checks)"
fi
