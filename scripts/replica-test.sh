#!/usr/bin/env bash
# replica-test.sh — finance reads from a streaming replica equal the primary's once it has caught up. Starts the HA
# cluster (scripts/ha-up.sh: a primary and a synchronous streaming standby), one service instance reading everything
# from the primary and one with ConnectionStrings__BillingReadOnly on the standby, posts reports, waits until the
# standby has replayed the primary's WAL, and compares the ledger CSV export, the requests export and the trial balance
# of the two. Ends with "N passed, N failed". Env: HA_PORT_BASE=25730. All on 127.0.0.1.
set -Eeuo pipefail
LAVA_SCRIPT=replica-test
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
export HA_PORT_BASE="${HA_PORT_BASE:-25730}"
dir="${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE"
work="$(mktemp -d "${TMPDIR:-/tmp}/lava-replica-test.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  bash scripts/ha-down.sh "$dir" --purge >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
bash scripts/ha-down.sh "$dir" --purge 2>/dev/null || true
primary="$(bash scripts/ha-up.sh "$dir")"
standby="${primary/Target Session Attributes=primary/Target Session Attributes=standby}"
pg_bin="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
sql() { (cd / && HOME=/ runuser -u postgres -- "$pg_bin/psql" -XAtq -h "$dir" -p "$1" -U postgres -d lava -c "$2"); }
is_primary() { [[ "$(sql "$1" 'SELECT NOT pg_is_in_recovery()')" == t ]]; }
p1=$((HA_PORT_BASE + 2)) p2=$((HA_PORT_BASE + 3))
if is_primary "$p1"; then primary_port=$p1 standby_port=$p2; else primary_port=$p2 standby_port=$p1; fi

dotnet build Lava.Billing -c Release -nologo -clp:ErrorsOnly >&2
dll=Lava.Billing/bin/Release/net10.0/Lava.Billing.dll
ConnectionStrings__Billing="$primary" dotnet "$dll" migrate >/dev/null 2>&1
merchant="$(ConnectionStrings__Billing="$primary" dotnet "$dll" merchants create --name replica 2>/dev/null)"
key="$(node -e 'console.log(JSON.parse(process.argv[1]).secret_key)' "$merchant")"
a_port="$(free_port 25960)"; b_port="$(free_port $((a_port + 1)))"
ConnectionStrings__Billing="$primary" dotnet "$dll" --urls "http://127.0.0.1:$a_port" >"$work/a.log" 2>&1 & pids+=($!)
ConnectionStrings__Billing="$primary" ConnectionStrings__BillingReadOnly="$standby" dotnet "$dll" --urls "http://127.0.0.1:$b_port" >"$work/b.log" 2>&1 & pids+=($!)
for port in "$a_port" "$b_port"; do
  for ((i = 0; i < 600; i++)); do curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
auth=(-fsS --max-time 30 -H "Authorization: Bearer $key" -H 'Content-Type: application/json')
a="http://127.0.0.1:$a_port" b="http://127.0.0.1:$b_port"
customer="$(curl "${auth[@]}" -d '{}' "$a/v1/customers" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).customer_id))')"
curl "${auth[@]}" -d '{"name":"Tokens","meter_slug":"tok","rate_type":"fixed","tier_type":"tokens_1m","tiers":[{"start":0,"rate":"5"},{"start":1000000,"rate":"3"}]}' "$a/v1/meters" >/dev/null
for i in $(seq 1 60); do
  curl "${auth[@]}" -d "{\"request_id\":\"x$i\",\"customer_id\":\"$customer\",\"meter_slug\":\"tok\",\"input_tokens\":$((i * 41113)),\"cost\":\"0.002\"}" "$a/v1/requests" >/dev/null
done
# Number every entry on the primary (a ledger read does), then wait until the standby has replayed all of it.
curl "${auth[@]}" "$a/v1/ledger/trial-balance" >/dev/null
target="$(sql "$primary_port" 'SELECT pg_current_wal_lsn()')"
for ((i = 0; i < 300; i++)); do
  [[ "$(sql "$standby_port" "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" == t ]] && break
  sleep 0.1
done

passed=0 failed=0
check() { if "$@"; then passed=$((passed + 1)); log "ok: $label"; else failed=$((failed + 1)); log "FAILED: $label"; fi; }
for path in "/v1/ledger/entries?format=csv" "/v1/requests?format=ndjson" "/v1/ledger/trial-balance"; do
  curl "${auth[@]}" "$a$path" > "$work/primary.out"; curl "${auth[@]}" "$b$path" > "$work/replica.out"
  label="$path from the replica equals the primary's ($(wc -c < "$work/primary.out") bytes)"
  check cmp -s "$work/primary.out" "$work/replica.out"
done
label="the ledger export had every posting (60 reports, 4 entries or more each)"
check test "$(curl "${auth[@]}" "$a/v1/ledger/entries?format=csv" | wc -l)" -gt 240
label="the second instance's finance reads ran on the standby"
check test "$(sql "$standby_port" "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lava-billing-ro'")" -gt 0
echo "replica: $passed passed, $failed failed"
(( failed == 0 ))
