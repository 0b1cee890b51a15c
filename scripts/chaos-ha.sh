#!/usr/bin/env bash
# chaos-ha.sh — failover under load, measured. Starts the HA cluster (scripts/ha-up.sh: etcd + two Patroni-managed
# PostgreSQL nodes, synchronous replication) and the service (Release) on its multi-host connection string, runs a
# client that reports usage and retries every unknown outcome with the same request_id (scripts/chaos/report-client.mjs),
# and SIGKILLs the current primary's postmaster CHAOS_KILLS times. Then checks on the new primary: every acknowledged
# report exists exactly once (one request row, one ledger transaction), and `ledger verify` passes. Prints the figures
# and, with CHAOS_WRITE_DOCS=1, rewrites the "Failover" section of docs/RELIABILITY.md between its markers.
# All traffic stays on 127.0.0.1; every loop is bounded. Exits non-zero when a report was lost or doubled.
#
# Env: HA_PORT_BASE=25710  CHAOS_KILLS=3  CHAOS_INTERVAL=15 (seconds between kills)  CHAOS_WORKERS=4  CHAOS_KEEP=1
set -Eeuo pipefail
LAVA_SCRIPT=chaos-ha
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
command -v node >/dev/null || die "node is needed for the client (scripts/chaos/report-client.mjs)"

export HA_PORT_BASE="${HA_PORT_BASE:-25710}"
KILLS="${CHAOS_KILLS:-3}" INTERVAL="${CHAOS_INTERVAL:-15}" WORKERS="${CHAOS_WORKERS:-4}"
[[ "$KILLS" =~ ^[0-9]+$ && "$INTERVAL" =~ ^[0-9]+$ && "$WORKERS" =~ ^[0-9]+$ ]] || die "CHAOS_* must be whole numbers"
(( KILLS <= 10 && INTERVAL >= 5 && INTERVAL <= 120 && WORKERS >= 1 && WORKERS <= 32 )) || die "CHAOS_KILLS<=10, CHAOS_INTERVAL 5-120, CHAOS_WORKERS 1-32"
dir="${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE"
work="$(mktemp -d "${TMPDIR:-/tmp}/lava-chaos-ha.XXXXXX")"
service_pid=""
cleanup() {
  [[ -n "$service_pid" ]] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null || true
  if [[ -z "${CHAOS_KEEP:-}" ]]; then bash scripts/ha-down.sh "$dir" --purge || true; rm -rf "$work"; else log "kept $dir and $work"; fi
}
trap cleanup EXIT

bash scripts/ha-down.sh "$dir" --purge 2>/dev/null || true
conn="$(bash scripts/ha-up.sh "$dir")"
rest1=$((HA_PORT_BASE + 4)) rest2=$((HA_PORT_BASE + 5))
pg_bin="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"

log "building the service (Release)"
dotnet build Lava.Billing -c Release -nologo -clp:ErrorsOnly >&2
dll=Lava.Billing/bin/Release/net10.0/Lava.Billing.dll
export ConnectionStrings__Billing="$conn"
dotnet "$dll" migrate 2>"$work/migrate.log" >/dev/null || { cat "$work/migrate.log" >&2; die "migrate failed"; }
merchant="$(dotnet "$dll" merchants create --name chaos 2>/dev/null)"
key="$(node -e 'console.log(JSON.parse(process.argv[1]).secret_key)' "$merchant")"
merchant_id="$(node -e 'console.log(JSON.parse(process.argv[1]).merchant_id)' "$merchant")"

port="$(free_port 25900)"
url="http://127.0.0.1:$port"
Billing__CycleCheckSeconds=3600 dotnet "$dll" --urls "$url" >"$work/service.log" 2>&1 &
service_pid=$!
for ((i = 0; i < 600; i++)); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/readyz" >/dev/null || { tail -n 40 "$work/service.log" >&2; die "the service did not become ready"; }
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
customer="$(curl -fsS "${auth[@]}" -d '{}' "$url/v1/customers" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).customer_id))')"
curl -fsS "${auth[@]}" -d '{"name":"Chaos","meter_slug":"chaos","rate_type":"fixed","tier_type":"tokens_1m","tiers":[{"start":0,"rate":"5"}]}' "$url/v1/meters" >/dev/null

primary_rest() { local r; for r in "$rest1" "$rest2"; do curl -fsS --max-time 1 "http://127.0.0.1:$r/primary" >/dev/null 2>&1 && { echo "$r"; return 0; }; done; return 1; }
node_of_rest() { [[ "$1" == "$rest1" ]] && echo node1 || echo node2; }

run_seconds=$(( (KILLS + 1) * INTERVAL ))
log "load: $WORKERS workers for ${run_seconds}s; $KILLS kills of the primary's postmaster, one every ${INTERVAL}s"
node scripts/chaos/report-client.mjs "$url" "$key" "$customer" "$run_seconds" "$WORKERS" "$work" >"$work/client.out" &
client_pid=$!
failovers=()
for ((k = 1; k <= KILLS; k++)); do
  sleep "$INTERVAL"
  rest="$(primary_rest)" || die "no primary before kill $k"
  name="$(node_of_rest "$rest")"
  pid="$(head -n1 "$dir/$name/postmaster.pid")"
  t0=$(date +%s.%N)
  log "kill $k: SIGKILL postmaster $pid of $name (primary)"
  kill -KILL "$pid"
  for ((i = 0; i < 600; i++)); do
    new="$(primary_rest)" && [[ "$new" != "$rest" ]] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  new="$(primary_rest)" || die "no new primary within 60 s of kill $k"
  failovers+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
  log "kill $k: $(node_of_rest "$new") is primary after ${failovers[-1]}s"
  # The killed node comes back as the synchronous standby (pg_rewind) before the next kill: Patroni promotes only a
  # synchronous standby, so without one the next kill would find nothing to fail over to.
  for ((i = 0; i < 1200; i++)); do
    curl -fsS --max-time 1 "http://127.0.0.1:$rest/sync" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS --max-time 1 "http://127.0.0.1:$rest/sync" >/dev/null 2>&1 || die "$name did not come back as the synchronous standby"
done
wait "$client_pid" || die "the client failed: $(cat "$work/client.out")"
summary="$(cat "$work/client.json")"
log "client: $summary"

# ---------- what the new primary holds ----------
new_port=$(( $(primary_rest) == rest1 ? HA_PORT_BASE + 2 : HA_PORT_BASE + 3 ))
psql_primary() { (cd / && HOME=/ runuser -u postgres -- "$pg_bin/psql" -XAtq -h "$dir" -p "$new_port" -U postgres -d lava "$@"); }
sort -u "$work/acked.txt" | grep -v '^$' > "$work/acked.sorted"
chmod 644 "$work/acked.sorted"; chmod 755 "$work"
psql_primary -c "CREATE TEMP TABLE acked (request_id text)" -c "\copy acked FROM '$work/acked.sorted'" -c "
SELECT (SELECT count(*) FROM acked),
       (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.merchant_id = '$merchant_id' AND r.request_id = a.request_id)),
       (SELECT count(*) FROM (SELECT reference FROM ledger_transactions WHERE merchant_id = '$merchant_id' AND reference LIKE 'chaos-%'
                              GROUP BY reference HAVING count(*) > 1) d),
       (SELECT count(*) FROM requests WHERE merchant_id = '$merchant_id')" > "$work/check.txt"
IFS='|' read -r acked lost doubled stored < <(tail -n1 "$work/check.txt")
verify=ok
dotnet "$dll" ledger verify >"$work/verify.log" 2>&1 || verify=FAILED
seconds_down="$(node -e 'console.log(JSON.parse(process.argv[1]).seconds_without_service)' "$summary")"
retries="$(node -e 'console.log(JSON.parse(process.argv[1]).retries)' "$summary")"
replayed="$(node -e 'console.log(JSON.parse(process.argv[1]).replayed)' "$summary")"
gap="$(node -e 'console.log(JSON.parse(process.argv[1]).longest_gap_between_acks_s)' "$summary")"
slowest="$(node -e 'console.log(JSON.parse(process.argv[1]).slowest_answer_s)' "$summary")"
log "acknowledged $acked, lost $lost, doubled $doubled, stored $stored, ledger verify $verify, seconds without service $seconds_down, longest gap ${gap}s"

if [[ -n "${CHAOS_WRITE_DOCS:-}" ]]; then
  doc=docs/RELIABILITY.md
  [[ -f "$doc" ]] || printf '# Reliability\n' > "$doc"
  section="$(cat <<MD
<!-- failover:begin (written by scripts/chaos-ha.sh; edit the script, not this section) -->
## Failover

\`scripts/chaos-ha.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores): etcd + two PostgreSQL 15 nodes under Patroni
(\`synchronous_mode: true\`, \`primary_start_timeout: 0\`), one service instance on
\`Host=…:${HA_PORT_BASE:+$((HA_PORT_BASE + 2))},…:$((HA_PORT_BASE + 3));Target Session Attributes=primary\`,
$WORKERS client workers reporting usage for ${run_seconds} s and retrying every unknown outcome with the same
\`request_id\`; the primary's postmaster was killed with SIGKILL $KILLS times, ${INTERVAL} s apart.
Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine count too).

| figure | value |
|---|---|
| reports acknowledged (201) | $acked |
| acknowledged but missing on the new primary (lost) | $lost |
| request ids with more than one ledger transaction (doubled) | $doubled |
| reports stored in all (acknowledged + posted whose answer was lost) | $stored |
| retries sent by the client / answers marked \`Idempotent-Replayed\` | $retries / $replayed |
| seconds a client waited on an unknown outcome (errors, union over workers) | $seconds_down |
| longest stretch with no report acknowledged, seconds | $gap |
| slowest single answer, seconds | $slowest |
| seconds from SIGKILL to a new primary, per kill | ${failovers[*]} |
| \`ledger verify\` on the new primary | $verify |

Why nothing acknowledged is lost: a commit returns only after the synchronous standby has flushed it, and Patroni
promotes only that standby. Why nothing is doubled: \`(merchant, request_id)\` is unique, so a retry of a report
whose commit landed but whose answer was lost is answered from the stored original. The service itself retries
posting while no primary answers (\`Database:Retry\`, about 20 s), so most clients see a slow answer rather than an
error; past that they get a 5xx and retry themselves.
<!-- failover:end -->
MD
)"
  if grep -q 'failover:begin' "$doc"; then
    node -e 'const fs=require("fs");const [f,s]=process.argv.slice(1);const t=fs.readFileSync(f,"utf8");fs.writeFileSync(f,t.replace(/<!-- failover:begin[\s\S]*?failover:end -->/,s));' "$doc" "$section"
  else
    printf '\n%s\n' "$section" >> "$doc"
  fi
  log "wrote the Failover section of $doc"
fi
[[ "$lost" == 0 && "$doubled" == 0 && "$verify" == ok && "$acked" -gt 0 ]] || die "failover lost or doubled reports, or the ledger does not verify"
echo "failover: acknowledged=$acked lost=$lost doubled=$doubled seconds_without_service=$seconds_down verify=$verify"
