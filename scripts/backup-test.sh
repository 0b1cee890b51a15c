#!/usr/bin/env bash
# backup-test.sh — proves scripts/backup.sh and scripts/restore.sh: a source cluster gets a ledger (a merchant, a
# customer with credit, reports through the service, ledger numbering), is backed up while the service runs, and is
# restored into a fresh cluster; the restored database must pass `ledger verify` and hold the same trial balance
# (every account's sum of entries), the same reports and the same ledger sequence. Ends with
# "backup-restore: N passed, N failed"; exits non-zero when a check failed. scripts/test.sh runs it.
# Env: BACKUP_TEST_PORT=25740 (the source cluster's port is the first free one from there, the target's the next).
# LAVA_BUILD_CONFIGURATION=Debug and LAVA_SKIP_BUILD=1 use an existing build (scripts/test.sh). As root, PostgreSQL runs
# as the postgres OS user. Everything is on 127.0.0.1 and is stopped and removed on exit, failed or not.
set -Eeuo pipefail
LAVA_SCRIPT=backup-test
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
base="${BACKUP_TEST_PORT:-25740}"
src_port="$(free_port "$base")"; dst_port="$(free_port $((src_port + 1)))"
work="$(mktemp -d "${TMPDIR:-/tmp}/lava-backup-test.XXXXXX")"; chmod 755 "$work"
service_pid=""
cleanup() {
  local rc=$?
  [[ -n "$service_pid" ]] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null || true
  bash scripts/pg-down.sh "$work/src" >/dev/null 2>&1 || true
  bash scripts/pg-down.sh "$work/dst" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export PGUP_ADMIN_PASSWORD=adminpw PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw
src="$(bash scripts/pg-up.sh "$work/src" "$src_port")"
dst="$(bash scripts/pg-up.sh "$work/dst" "$dst_port")"
dst_admin="Host=127.0.0.1;Port=$dst_port;Database=postgres;Username=postgres;Password=adminpw"

build_release "$root"
ConnectionStrings__Billing="$src" dotnet "$dll" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; die "migrate failed"; }
merchant="$(ConnectionStrings__Billing="$src" dotnet "$dll" merchants create --name backup 2>"$work/cli.log")" || { cat "$work/cli.log" >&2; die "merchants create failed"; }
key="$(node -e 'console.log(JSON.parse(process.argv[1]).secret_key)' "$merchant")"
port="$(free_port 25950)"; url="http://127.0.0.1:$port"
ConnectionStrings__Billing="$src" dotnet "$dll" --urls "$url" >"$work/service.log" 2>&1 &
service_pid=$!
for ((i = 0; i < 600; i++)); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/readyz" >/dev/null || { tail -n 40 "$work/service.log" >&2; die "the service did not become ready"; }
auth=(-fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json')
customer="$(curl "${auth[@]}" -d '{}' "$url/v1/customers" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).customer_id))')"
curl "${auth[@]}" -d '{"name":"Tokens","meter_slug":"tok","rate_type":"fixed","tier_type":"tokens_1m","tiers":[{"start":0,"rate":"5"},{"start":1000000,"rate":"3"}]}' "$url/v1/meters" >/dev/null
post_reports "$url" "$key" "$customer" b 40 37111 0.001
# Number every entry on the source (a ledger entries read runs the sequencer first), so the backup holds the ledger
# sequence and the comparison below does not race the background sequencer.
curl "${auth[@]}" "$url/v1/ledger/entries?format=csv" >/dev/null

bash scripts/backup.sh "$work/lava.dump" "$src"
kill "$service_pid"; wait "$service_pid" 2>/dev/null || true; service_pid=""
bash scripts/restore.sh "$work/lava.dump" "$dst_admin" lava_restored lava
restored="Host=127.0.0.1;Port=$dst_port;Database=lava_restored;Username=lava;Password=lava_pw"
# The owner role came without a password on a fresh cluster; pg-up made one for lava already.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
figures() {
  pg_env_from_npgsql "$1"
  "$pg_bin/psql" -XAtq --no-password -c "SELECT merchant_id, account_id, sum(amount) FROM entries GROUP BY 1, 2 ORDER BY 1, 2" \
    -c "SELECT count(*), coalesce(sum(charge_amount), 0) FROM requests" -c "SELECT coalesce(sum(cardinality(entry_ids)), 0), coalesce(max(first_seq + cardinality(entry_ids) - 1), 0) FROM ledger_sequence"
}
passed=0 failed=0
check() { if "$@"; then passed=$((passed + 1)); log "ok: ${label}"; else failed=$((failed + 1)); log "FAILED: ${label}"; fi; }
verify_restored() { ConnectionStrings__Billing="$restored" dotnet "$dll" ledger verify >"$work/verify.log" 2>&1; }
label="the restored database passes ledger verify"
check verify_restored
figures "$src" > "$work/src.txt"; figures "$restored" > "$work/dst.txt"
label="the restored trial balance, reports and ledger sequence equal the source's ($(wc -l < "$work/src.txt") lines)"
check cmp -s "$work/src.txt" "$work/dst.txt"
label="the source had postings to compare"
check test "$(grep -c '|' "$work/src.txt")" -gt 5
(( failed == 0 )) || { diff "$work/src.txt" "$work/dst.txt" >&2 || true; cat "$work/verify.log" >&2; }
echo "backup-restore: $passed passed, $failed failed"
(( failed == 0 ))
