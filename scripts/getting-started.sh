#!/usr/bin/env bash
# scripts/getting-started.sh — runs every ```sh block of docs/getting-started.md, in order, in one bash shell, the
# way a newcomer pastes them, so the guide cannot drift from the service. scripts/test.sh runs it after the xunit
# suite; each block counts as one test in its closing line "getting-started: N passed, N failed".
#
# Usage: scripts/getting-started.sh [CONN]
#   CONN  an Npgsql connection string of a PostgreSQL where a fresh database can be made (as its user, or with
#         LAVA_TEST_ADMIN_DB); without it a throwaway cluster is started on a free port and removed afterwards.
# The guide's ports (service 5080, provider 5090) become free ports; the service runs the Debug build when one exists.
# Leaves nothing behind: the service, the provider and the guide's files (.lava/guide) go at the end, and the
# demo merchant file scripts/run.sh writes is put back as it was.
set -euo pipefail
LAVA_SCRIPT=getting-started
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
command -v node >/dev/null 2>&1 || die "node is needed (the guide starts a fake provider with it)"
command -v curl >/dev/null 2>&1 || die "curl is needed"

work="$(mktemp -d "${TMPDIR:-/tmp}/lava-guide.XXXXXX")"
chmod 755 "$work"
mkdir -p .lava
for f in demo-merchant.json demo-merchant.target service.pid; do [[ -e ".lava/$f" ]] && cp -p ".lava/$f" "$work/$f.keep"; done
[[ -e .lava/guide ]] && die ".lava/guide exists: it is the guide's own folder; remove it first"

cleanup() {
  local rc=$?
  [[ -n "${guide_pid:-}" ]] && kill -- "-$guide_pid" 2>/dev/null || true
  [[ -s .lava/service.pid ]] && [[ "$(cat .lava/service.pid)" != "$(cat "$work/service.pid.keep" 2>/dev/null)" ]] \
    && kill "$(cat .lava/service.pid)" 2>/dev/null || true
  for f in demo-merchant.json demo-merchant.target service.pid; do
    if [[ -e "$work/$f.keep" ]]; then cp -p "$work/$f.keep" ".lava/$f"; else rm -f ".lava/$f"; fi
  done
  rm -rf .lava/guide
  [[ -n "${own_cluster:-}" ]] && scripts/pg-down.sh "$work/pg" --purge >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# ---------- a fresh database ----------
conn="${1:-}"
if [[ -z "$conn" ]]; then
  pg_port="$(free_port 25700)" || die "no free port for PostgreSQL"
  conn="$(PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw scripts/pg-up.sh "$work/pg" "$pg_port")"
  own_cluster=1
else
  psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$psql" ]] || die "psql not found"
  get() { printf '%s' "$1" | tr ';' '\n' | sed -n "s/^[[:space:]]*$2[[:space:]]*=//Ip" | head -n1; }
  sql() { PGPASSWORD="$(get "$1" password)" "$psql" -X -q -v ON_ERROR_STOP=1 -h "$(get "$1" host)" -p "$(get "$1" port)" \
    -U "$(get "$1" username)" -d "$(get "$1" database)" -c "$2"; }
  db="lava_guide_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  owner="$(get "$conn" username)"
  sql "$conn" "CREATE DATABASE \"$db\"" >/dev/null 2>&1 ||
    { [[ -n "${LAVA_TEST_ADMIN_DB:-}" ]] && sql "$LAVA_TEST_ADMIN_DB" "CREATE DATABASE \"$db\" OWNER \"$owner\"" >/dev/null; } ||
    die "cannot create a database on the given cluster"
  conn="$(printf '%s' "$conn" | tr ';' '\n' | grep -viE '^[[:space:]]*((database|db)[[:space:]]*=.*)?$' | paste -sd';' -);Database=$db"
fi

# ---------- the guide's commands ----------
svc_port="$(free_port 25800)" || die "no free port for the service"
fake_port="$(free_port 25900)" || die "no free port for the provider"
blocks=0
{
  echo 'set -euo pipefail'
  awk -v reached="$work/reached" '
    /^```sh[[:space:]]*$/ { inside = 1; n++; print "echo " n " > " reached; print "echo \"[guide] block " n "\" >&2"; next }
    /^```/ && inside { inside = 0; next }
    inside { print }
  ' docs/getting-started.md | sed -e "s/127\.0\.0\.1:5080/127.0.0.1:$svc_port/g" -e "s/127\.0\.0\.1:5090/127.0.0.1:$fake_port/g" \
    -e "s/fake-provider\.mjs 5090/fake-provider.mjs $fake_port/g"
  echo "echo done > $work/reached"
} >"$work/guide.sh"
blocks="$(grep -c '^```sh[[:space:]]*$' docs/getting-started.md)"
(( blocks > 0 )) || die "docs/getting-started.md has no \`\`\`sh block"

build="Release"
[[ -f Lava.Billing/bin/Debug/net10.0/Lava.Billing.dll ]] && build="Debug"
# built once here; the guide's scripts then use it as it is
dotnet build Lava.Billing/Lava.Billing.csproj -c "$build" -nologo -v:quiet "-clp:ErrorsOnly;NoSummary" >&2 || die "the build failed"
log "running $blocks blocks of docs/getting-started.md (service :$svc_port, provider :$fake_port, $build build)"
set +e
# its own process group, so every process the guide starts in the background goes with it
setsid env ConnectionStrings__Billing="$conn" LAVA_URLS="http://127.0.0.1:$svc_port" LAVA_BUILD_CONFIGURATION="$build" LAVA_SKIP_BUILD=1 \
  bash "$work/guide.sh" >"$work/guide.out" 2>&1 &
guide_pid=$!
wait "$guide_pid"
rc=$?
set -e
reached="$(cat "$work/reached" 2>/dev/null || echo 0)"
if [[ $rc -eq 0 && "$reached" == done ]]; then
  passed=$blocks failed=0
else
  cat "$work/guide.out" >&2
  [[ -f .lava/guide/service.log ]] && { log "service log:"; tail -n 30 .lava/guide/service.log >&2; }
  [[ "$reached" =~ ^[0-9]+$ ]] || reached=1
  passed=$((reached - 1)) failed=$((blocks - reached + 1))
  log "block $reached failed (exit $rc)"
fi
echo "getting-started: $passed passed, $failed failed"
(( failed == 0 ))
