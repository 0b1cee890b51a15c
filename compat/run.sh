#!/usr/bin/env bash
# compat/run.sh — Lava's official Node SDK (@lavapayments/nodejs, pinned in package-lock.json) against this service.
#
# Usage: bash compat/run.sh CONN
#   CONN  Npgsql connection string of a throwaway database (scripts/test.sh passes its own).
# Needs node >= 20 and npm, and a Debug build (scripts/test.sh builds it; or `dotnet build Lava.sln -c Debug`).
# The run gets a fresh database when CONN's role may create one, or when LAVA_TEST_ADMIN_DB (a superuser
# connection, exported by scripts/test.sh) is set; otherwise it runs in CONN's database as it is.
# It creates a merchant, starts a fake OpenAI-compatible provider (compat/fake-provider.mjs) and the service on free
# ports, the service allowing that provider as its only upstream, runs `node --test` with the TAP reporter, always
# stops both, and exits with node's status. TAP ends with "# pass N" / "# fail N" / "# cancelled N" lines.
set -euo pipefail
LAVA_SCRIPT=compat
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

conn="${1:-}"
[[ -n "$conn" ]] || die "usage: bash compat/run.sh CONN   (an Npgsql connection string to a throwaway database)"
command -v node >/dev/null 2>&1 || die "node is not on PATH (Node.js >= 20 is needed)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"
require_dotnet
dll="Lava.Billing/bin/Debug/net10.0/Lava.Billing.dll"
[[ -f "$dll" ]] || die "$dll is missing: build first (scripts/test.sh does; or: dotnet build Lava.sln -c Debug)"

work="$(mktemp -d "${TMPDIR:-/tmp}/lava-compat.XXXXXX")"
svc_pid="" node_pid="" fake_pid="" fresh_db="" admin_conn=""

cleanup() {
  local rc=$?
  [[ -n "$node_pid" ]] && kill "$node_pid" 2>/dev/null
  if [[ -n "$svc_pid" ]] && kill -0 "$svc_pid" 2>/dev/null; then
    kill "$svc_pid" 2>/dev/null || true
    for _ in {1..50}; do kill -0 "$svc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$svc_pid" 2>/dev/null || true
  fi
  [[ -n "$fake_pid" ]] && kill "$fake_pid" 2>/dev/null
  [[ -n "$fresh_db" ]] && run_sql "$admin_conn" "DROP DATABASE IF EXISTS \"$fresh_db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------- the SDK, exactly as locked ----------
log "installing the SDK (npm ci)"
if ! (cd compat && npm ci --no-audit --no-fund --loglevel=error) >"$work/npm.log" 2>&1; then
  cat "$work/npm.log" >&2
  die "npm ci failed in compat/"
fi

# ---------- a fresh database for this run ----------
# Reads one key (any of its aliases, case-insensitive) from an Npgsql connection string.
conn_get() {
  local s="$1" part key value alias parts; shift
  IFS=';' read -ra parts <<<"$s"
  for part in "${parts[@]}"; do
    key="$(printf '%s' "${part%%=*}" | tr '[:upper:]' '[:lower:]' | tr -d ' ')"
    value="${part#*=}"
    for alias in "$@"; do [[ "$key" == "$alias" ]] && { printf '%s' "$value"; return 0; }; done
  done
  return 1
}
# Runs one statement with psql against an Npgsql connection string (host/port/database/user/password only).
run_sql() {
  local c="$1" sql="$2"
  PGPASSWORD="$(conn_get "$c" password pwd || true)" PGCONNECT_TIMEOUT=10 "$psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$(conn_get "$c" host server)" -p "$(conn_get "$c" port || echo 5432)" \
    -U "$(conn_get "$c" username userid user)" -d "$(conn_get "$c" database db)" -c "$sql"
}
psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1 || true)"
svc_conn="$conn"
if [[ -z "$psql" ]]; then
  log "psql not found: running in the given database as it is"
else
  db_name="lava_compat_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  owner="$(conn_get "$conn" username userid user || true)"
  if run_sql "$conn" "CREATE DATABASE \"$db_name\"" >/dev/null 2>"$work/createdb.err"; then
    fresh_db="$db_name" admin_conn="$conn" how="as $owner"
  elif [[ -n "${LAVA_TEST_ADMIN_DB:-}" && -n "$owner" ]] \
    && run_sql "$LAVA_TEST_ADMIN_DB" "CREATE DATABASE \"$db_name\" OWNER \"$owner\"" >/dev/null 2>>"$work/createdb.err"; then
    fresh_db="$db_name" admin_conn="$LAVA_TEST_ADMIN_DB" how="by LAVA_TEST_ADMIN_DB: $owner may not create databases"
  else
    log "cannot create a database ($(tail -n1 "$work/createdb.err")): running in the given database as it is"
  fi
  if [[ -n "$fresh_db" ]]; then
    # Drop every database key and name the new one; the other keys (host, credentials, SSL…) stay as given.
    svc_conn="$(printf '%s' "$conn" | tr ';' '\n' | grep -viE '^[[:space:]]*((database|db)[[:space:]]*=.*)?$' | paste -sd';' -);Database=$fresh_db"
    log "fresh database $fresh_db (created $how)"
  fi
fi
export ConnectionStrings__Billing="$svc_conn"
unset ConnectionStrings__BillingReadOnly

# ---------- a merchant and the service ----------
if ! merchant="$(dotnet "$dll" merchants create --name "SDK compat run" 2>"$work/merchant.log")"; then
  cat "$work/merchant.log" >&2
  die "merchants create failed"
fi
secret="$(printf '%s' "$merchant" | sed -n 's/.*"secret_key":"\([^"]*\)".*/\1/p')"
[[ "$secret" == aks_* ]] || die "merchants create printed no secret key: $merchant"

# The provider first: the service reads its allow-list at start-up, and the provider's port (0: the OS picks one)
# is known only once it listens and prints its URL. The output file exists before the child starts: the child's
# redirection opens it only after the fork, and the first poll below can come sooner (a CI run failed on that).
: >"$work/fake-provider.out"
node compat/fake-provider.mjs >"$work/fake-provider.out" 2>&1 &
fake_pid=$!
fake_url=""
for _ in {1..100}; do
  kill -0 "$fake_pid" 2>/dev/null || { cat "$work/fake-provider.out" >&2; die "the fake provider exited during start-up"; }
  fake_url="$(head -n1 "$work/fake-provider.out" 2>/dev/null || true)"
  [[ "$fake_url" == http://127.0.0.1:*[0-9] ]] && break
  fake_url=""
  sleep 0.1
done
[[ -n "$fake_url" ]] || die "the fake provider printed no URL within 10 s"
log "fake provider on $fake_url"

port="$(free_port 25600)" || die "no free port for the service"
log "starting the service on 127.0.0.1:$port (log: $work/service.log)"
# Only $fake_url/v1 is allowed, so the provider's /calls (what the tests read back) is out of the gateway's reach.
# env, because a variable whose name holds dots (the host of a managed key) cannot be exported from bash.
: >"$work/service.log"
# Webhooks may call loopback here: the webhook tests' receiver listens on 127.0.0.1.
# Spend keys' model table sends gpt- models to the fake provider (compat/openai_client.test.mjs).
env "Forward__AllowedUpstreams__0=$fake_url/v1" "Forward__ManagedKeys__127.0.0.1=sk-managed" \
  "SpendKeys__Routes__0__Prefix=gpt-" "SpendKeys__Routes__0__Provider=openai" "SpendKeys__Routes__0__Shape=openai" \
  "SpendKeys__Routes__0__BaseUrl=$fake_url/v1" \
  "Webhooks__AllowPrivateAddresses=true" "Webhooks__PollIntervalMs=100" \
  dotnet "$dll" --urls "http://127.0.0.1:$port" >"$work/service.log" 2>&1 &
svc_pid=$!

ready=0
for _ in {1..300}; do
  kill -0 "$svc_pid" 2>/dev/null || { tail -n 40 "$work/service.log" >&2; die "the service exited during start-up"; }
  if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
    "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
(( ready )) || { tail -n 40 "$work/service.log" >&2; die "the service was not ready on /readyz within 60 s"; }

# ---------- the suite ----------
log "running node --test compat/ against http://127.0.0.1:$port/v1/"
# in the background and waited for, so a signal to this script runs the cleanup at once
LAVA_BASE_URL="http://127.0.0.1:$port/v1/" LAVA_SECRET_KEY="$secret" LAVA_FAKE_PROVIDER_URL="$fake_url" \
  timeout 900 node --test --test-reporter=tap compat/ &
node_pid=$!
set +e
wait "$node_pid"
node_rc=$?
set -e
node_pid=""
if (( node_rc != 0 )); then
  # a failing test that met a 500 shows up here; routine request logging does not
  if grep -qE '^(warn|fail|crit):' "$work/service.log"; then
    log "node --test exited $node_rc; warnings and errors the service logged:"
    grep -E -A4 '^(warn|fail|crit):' "$work/service.log" | head -n 60 >&2
  else
    log "node --test exited $node_rc; the service logged no warning or error"
  fi
fi
exit "$node_rc"
