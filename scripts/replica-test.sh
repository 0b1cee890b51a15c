#!/usr/bin/env bash
# replica-test.sh — finance reads from a streaming replica equal the primary's once it has caught up. Starts a primary
# and a streaming standby, one service instance reading everything from the primary and one with
# ConnectionStrings__BillingReadOnly on the standby, posts reports, waits until the standby has replayed the primary's
# WAL, and compares the ledger CSV export, the requests export and the trial balance of the two. Ends with
# "replica: N passed, N failed"; exits non-zero when a check failed.
#
# Usage: scripts/replica-test.sh [patroni|streaming]
#   patroni    (default) the HA cluster of scripts/ha-up.sh: etcd and two Patroni nodes, the standby synchronous.
#              Env: HA_PORT_BASE=25730.
#   streaming  no Patroni or etcd: a primary from scripts/pg-up.sh and a standby copied from it with pg_basebackup,
#              streaming asynchronously. The bounded run of scripts/test.sh. Env: REPLICA_TEST_PORT=25760 (the
#              primary's port is the first free one from there, the standby's the next).
# LAVA_BUILD_CONFIGURATION=Debug and LAVA_SKIP_BUILD=1 use an existing build (scripts/test.sh). As root, PostgreSQL
# runs as the postgres OS user. Everything is on 127.0.0.1 and is stopped and removed on exit, failed or not.
set -Eeuo pipefail
LAVA_SCRIPT=replica-test
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
mode="${1:-patroni}"
[[ "$mode" == patroni || "$mode" == streaming ]] || die "usage: scripts/replica-test.sh [patroni|streaming]"
work="$(mktemp -d "${TMPDIR:-/tmp}/lava-replica-test.XXXXXX")"
chmod 755 "$work"
pids=()
if [[ "$mode" == patroni ]]; then
  export HA_PORT_BASE="${HA_PORT_BASE:-25730}"
  dir="${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE"
fi
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  if [[ "$mode" == patroni ]]; then
    bash scripts/ha-down.sh "$dir" --purge >/dev/null 2>&1 || true
  else
    bash scripts/pg-down.sh "$work/standby" >/dev/null 2>&1 || true
    bash scripts/pg-down.sh "$work/primary" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
pg_bin="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"

if [[ "$mode" == patroni ]]; then
  bash scripts/ha-down.sh "$dir" --purge 2>/dev/null || true
  primary="$(bash scripts/ha-up.sh "$dir")"
  standby="${primary/Target Session Attributes=primary/Target Session Attributes=standby}"
  as_pg() { if [[ $EUID -eq 0 ]]; then (cd / && HOME=/ runuser -u postgres -- "$@"); else (cd / && "$@"); fi; }
  p1=$((HA_PORT_BASE + 2)) p2=$((HA_PORT_BASE + 3))
  sql_on() { as_pg "$pg_bin/psql" -XAtq -h "$dir" -p "$1" -U postgres -d lava -c "$2"; }
  if [[ "$(sql_on "$p1" 'SELECT NOT pg_is_in_recovery()')" == t ]]; then primary_port=$p1 standby_port=$p2; else primary_port=$p2 standby_port=$p1; fi
  sql_primary() { sql_on "$primary_port" "$1"; }
  sql_standby() { sql_on "$standby_port" "$1"; }
else
  primary_port="$(free_port "${REPLICA_TEST_PORT:-25760}")" || die "no free port for the primary"
  standby_port="$(free_port $((primary_port + 1)))" || die "no free port for the standby"
  primary="$(PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw bash scripts/pg-up.sh "$work/primary" "$primary_port")"
  standby="Host=127.0.0.1;Port=$standby_port;Database=lava;Username=lava;Password=lava_pw"
  os_user="$(stat -c %U "$work/primary")"
  as_pg() { if [[ $EUID -eq 0 ]]; then (cd / && HOME=/ runuser -u "$os_user" -- "$@"); else (cd / && "$@"); fi; }
  # Both clusters listen on a socket in their data directory (pg-up.sh does so for paths this short).
  (( ${#work} <= 80 )) || die "TMPDIR is too long a path for the clusters' sockets"
  mkdir "$work/standby"
  [[ $EUID -eq 0 ]] && chown "$os_user:" "$work/standby"
  chmod 700 "$work/standby"
  log "copying the primary into a standby (pg_basebackup), streaming on 127.0.0.1:$standby_port"
  # -R writes standby.signal and primary_conninfo (the primary's socket, trusted for replication by initdb's defaults).
  as_pg "$pg_bin/pg_basebackup" -h "$work/primary" -p "$primary_port" -U postgres -D "$work/standby" -R -X stream -c fast >&2
  # pgup.conf came along with the copy; the standby gets its own port and socket.
  printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\nhot_standby = on\nmax_connections = 200\n" \
    "$standby_port" "$work/standby" | as_pg tee "$work/standby/pgup.conf" >/dev/null
  as_pg "$pg_bin/pg_ctl" start -D "$work/standby" -l "$work/standby/server.log" -w -t 60 -s >&2 \
    || { tail -n 30 "$work/standby/server.log" >&2; die "the standby did not start"; }
  sql_primary() { as_pg "$pg_bin/psql" -XAtq -h "$work/primary" -p "$primary_port" -U postgres -d lava -c "$1"; }
  sql_standby() { as_pg "$pg_bin/psql" -XAtq -h "$work/standby" -p "$standby_port" -U postgres -d lava -c "$1"; }
  [[ "$(sql_standby 'SELECT pg_is_in_recovery()')" == t ]] || die "the copy is not a standby"
fi

build_release "$root"
ConnectionStrings__Billing="$primary" dotnet "$dll" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; die "migrate failed"; }
merchant="$(ConnectionStrings__Billing="$primary" dotnet "$dll" merchants create --name replica 2>"$work/cli.log")" || { cat "$work/cli.log" >&2; die "merchants create failed"; }
key="$(node -e 'console.log(JSON.parse(process.argv[1]).secret_key)' "$merchant")"
a_port="$(free_port 25960)"; b_port="$(free_port $((a_port + 1)))"
ConnectionStrings__Billing="$primary" dotnet "$dll" --urls "http://127.0.0.1:$a_port" >"$work/a.log" 2>&1 & pids+=($!)
ConnectionStrings__Billing="$primary" ConnectionStrings__BillingReadOnly="$standby" dotnet "$dll" --urls "http://127.0.0.1:$b_port" >"$work/b.log" 2>&1 & pids+=($!)
for port in "$a_port" "$b_port"; do
  for ((i = 0; i < 600; i++)); do curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null || { tail -n 40 "$work"/[ab].log >&2; die "the instance on port $port did not become ready"; }
done
auth=(-fsS --max-time 30 -H "Authorization: Bearer $key" -H 'Content-Type: application/json')
a="http://127.0.0.1:$a_port" b="http://127.0.0.1:$b_port"
customer="$(curl "${auth[@]}" -d '{}' "$a/v1/customers" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).customer_id))')"
curl "${auth[@]}" -d '{"name":"Tokens","meter_slug":"tok","rate_type":"fixed","tier_type":"tokens_1m","tiers":[{"start":0,"rate":"5"},{"start":1000000,"rate":"3"}]}' "$a/v1/meters" >/dev/null
post_reports "$a" "$key" "$customer" x 60 41113 0.002
# Number every entry on the primary (a ledger entries read runs the sequencer first; the trial balance does not), then
# wait until the standby has replayed all of it.
curl "${auth[@]}" "$a/v1/ledger/entries?format=csv" >/dev/null
target="$(sql_primary 'SELECT pg_current_wal_lsn()')"
for ((i = 0; i < 300; i++)); do
  [[ "$(sql_standby "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" == t ]] && break
  sleep 0.1
done

passed=0 failed=0
check() { if "$@"; then passed=$((passed + 1)); log "ok: $label"; else failed=$((failed + 1)); log "FAILED: $label"; fi; }
label="the standby replayed the primary's WAL within 30 s"
check test "$(sql_standby "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" == t
for path in "/v1/ledger/entries?format=csv" "/v1/requests?format=ndjson" "/v1/ledger/trial-balance"; do
  curl "${auth[@]}" "$a$path" > "$work/primary.out"; curl "${auth[@]}" "$b$path" > "$work/replica.out"
  label="$path from the replica equals the primary's ($(wc -c < "$work/primary.out") bytes)"
  check cmp -s "$work/primary.out" "$work/replica.out"
done
label="the ledger export had every posting (60 reports, 4 entries or more each)"
check test "$(curl "${auth[@]}" "$a/v1/ledger/entries?format=csv" | wc -l)" -gt 240
label="the second instance's finance reads ran on the standby"
check test "$(sql_standby "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lava-billing-ro'")" -gt 0
echo "replica: $passed passed, $failed failed"
(( failed == 0 ))
