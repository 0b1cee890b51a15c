#!/usr/bin/env bash
# chaos-ha.sh — failover under load, measured. Starts the HA cluster (scripts/ha-up.sh: etcd + two Patroni-managed
# PostgreSQL nodes, synchronous replication), the stub provider of the crash mode (bench/stub-provider.mjs, logging
# every call it accepts) and the service (Release) on the cluster's multi-host connection string. The crash mode's load
# client (scripts/chaos/load.mjs) sends single reports, batches and billed gateway calls (/v1/forward with a forward
# token, streamed and not), retrying every unknown outcome of a report with the same request_id, while this script
# SIGKILLs the current primary's postmaster CHAOS_KILLS times (each time, when it can, while a gateway stream is in
# flight) and waits for the killed node to rejoin as the synchronous standby. Then the crash mode's checks
# (scripts/chaos/check.mjs) run on the new primary: every acknowledged report exists exactly once, nothing is posted
# twice, every call the provider served is billed exactly once and none was sent to it twice, no hold is left active,
# and `ledger verify` passes. Prints "PASS name: ..." / "FAIL name: ..." per check, the seconds without service per
# failover, and, with CHAOS_WRITE_DOCS=1, rewrites the "Failover" section of docs/RELIABILITY.md between its markers.
# All traffic stays on 127.0.0.1; every loop is bounded. Exits non-zero when any check failed.
#
# Env: HA_PORT_BASE=25710  CHAOS_KILLS=3  CHAOS_INTERVAL=15 (seconds of load between kills)  CHAOS_SEED=1
#      CHAOS_STREAM_GAP_MS=1000  CHAOS_OUT=DIR (default scripts/chaos/results/<UTC time>-ha)  CHAOS_KEEP=1 (keep
#      the cluster)  and the load client's CHAOS_SINGLE_WORKERS=6 CHAOS_BATCH_WORKERS=2 CHAOS_GATEWAY_WORKERS=4
set -Eeuo pipefail
LAVA_SCRIPT=chaos-ha
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed for the load client and checks (scripts/chaos/)"

export HA_PORT_BASE="${HA_PORT_BASE:-25710}"
KILLS="${CHAOS_KILLS:-3}" INTERVAL="${CHAOS_INTERVAL:-15}" SEED="${CHAOS_SEED:-1}" STREAM_GAP="${CHAOS_STREAM_GAP_MS:-1000}"
[[ "$KILLS" =~ ^[0-9]+$ && "$INTERVAL" =~ ^[0-9]+$ && "$SEED" =~ ^[0-9]+$ && "$STREAM_GAP" =~ ^[0-9]+$ ]] || die "CHAOS_* must be whole numbers"
(( KILLS >= 1 && KILLS <= 10 && INTERVAL >= 5 && INTERVAL <= 120 )) || die "CHAOS_KILLS 1-10, CHAOS_INTERVAL 5-120"
dir="${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE"
out="${CHAOS_OUT:-scripts/chaos/results/$(date -u +%Y%m%dT%H%M%SZ)-ha}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
chmod 755 "$out"
service_pid="" stub_pid="" load_pid=""
stop_pid() { [[ -n "$1" ]] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }
cleanup() {
  local rc=$?
  stop_pid "$load_pid"; stop_pid "$service_pid"; stop_pid "$stub_pid"
  if [[ -z "${CHAOS_KEEP:-}" ]]; then bash scripts/ha-down.sh "$dir" --purge || true; else log "kept $dir"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "installing the harness's packages (npm ci in scripts/chaos/)"
(cd scripts/chaos && npm ci --no-audit --no-fund --loglevel=error) >"$out/npm.log" 2>&1 || { cat "$out/npm.log" >&2; die "npm ci failed in scripts/chaos/"; }
bash scripts/ha-down.sh "$dir" --purge 2>/dev/null || true
conn="$(bash scripts/ha-up.sh "$dir")"
rest1=$((HA_PORT_BASE + 4)) rest2=$((HA_PORT_BASE + 5))
# One host, for the checks (node's pg client and libpq take no host list): the node that is primary now.
primary_rest() { local r; for r in "$rest1" "$rest2"; do curl -fsS --max-time 1 "http://127.0.0.1:$r/primary" >/dev/null 2>&1 && { echo "$r"; return 0; }; done; return 1; }
node_of_rest() { [[ "$1" == "$rest1" ]] && echo node1 || echo node2; }
primary_conn() {
  local rest pg
  rest="$(primary_rest)" || return 1
  pg=$(( rest == rest1 ? HA_PORT_BASE + 2 : HA_PORT_BASE + 3 ))
  printf 'Host=127.0.0.1;Port=%s;Database=%s;Username=%s;Password=%s\n' "$pg" "${HA_DB:-lava}" "${HA_USER:-lava}" "${HA_PASSWORD:-lava_pw}"
}

log "building the service (Release)"
dotnet build Lava.Billing -c Release -nologo -clp:ErrorsOnly >&2
dll=Lava.Billing/bin/Release/net10.0/Lava.Billing.dll
export ConnectionStrings__Billing="$conn"
dotnet "$dll" migrate 2>"$out/migrate.log" >/dev/null || { cat "$out/migrate.log" >&2; die "migrate failed"; }
merchant="$(dotnet "$dll" merchants create --name chaos-ha 2>>"$out/cli.log")" || die "merchants create failed (see $out/cli.log)"
json_field() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$1" "$2"; }

: >"$out/served.log"; : >"$out/stub.out"
node bench/stub-provider.mjs 0 "$STREAM_GAP" "$out/served.log" >"$out/stub.out" 2>>"$out/stub.log" &
stub_pid=$!
stub_url=""
for ((i = 0; i < 100; i++)); do
  stub_url="$(head -n1 "$out/stub.out" 2>/dev/null || true)"
  [[ "$stub_url" == http://127.0.0.1:*[0-9] ]] && break
  stub_url=""; sleep 0.1
done
[[ -n "$stub_url" ]] || die "the stub provider did not start within 10 s (see $out/stub.log)"

port="$(free_port 25900)"
url="http://127.0.0.1:$port"
# The gateway's windows as in the crash mode (scripts/chaos.sh): a call silent for longer than them is settled by the
# service's settle worker, so the checks can wait them out.
env ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Microsoft.AspNetCore=Warning Logging__Console__TimestampFormat='HH:mm:ss.fff ' \
  Billing__CycleCheckSeconds=3600 Forward__AllowedUpstreams__0="$stub_url/v1" Forward__ManagedKeys__127.0.0.1=sk-chaos \
  Forward__TimeoutMs=5000 Forward__RecoveryMarginMs=5000 Forward__SettleIntervalMs=1000 Forward__SettleLeaseMs=10000 \
  dotnet "$dll" --urls "$url" >"$out/service.log" 2>&1 &
service_pid=$!
for ((i = 0; i < 600; i++)); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/readyz" >/dev/null || { tail -n 40 "$out/service.log" >&2; die "the service did not become ready"; }
node scripts/chaos/setup.mjs "$url" "$(json_field "$merchant" secret_key)" "$(json_field "$merchant" merchant_id)" 12 chaos >"$out/setup.json"
node scripts/chaos/check.mjs baseline "$(primary_conn)" "$out/setup.json" "$out/baseline.json"

log "load: reports, batches and gateway calls; $KILLS SIGKILLs of the primary's postmaster, ${INTERVAL}s of load before each"
: >"$out/events.log"
node scripts/chaos/load.mjs "$url" "$out/setup.json" "$stub_url" "$out/load.json" "$SEED" 2>"$out/load.log" &
load_pid=$!
now_ms() { date +%s%3N; }
promoted=() rejoined=()
for ((k = 1; k <= KILLS; k++)); do
  sleep "$INTERVAL"
  kill -0 "$load_pid" 2>/dev/null || die "the load client exited early; see $out/load.log"
  rest="$(primary_rest)" || die "no primary before kill $k"
  name="$(node_of_rest "$rest")"
  # Up to 5 s for a gateway stream the provider is still sending, so the call's billing meets the failover.
  mid=false
  for ((i = 0; i < 100; i++)); do
    if awk '/"stream":true/ { if (/"event":"served"/) s++; else e++ } END { exit !(s > e) }' "$out/served.log"; then mid=true; break; fi
    sleep 0.05
  done
  pid="$(head -n1 "$dir/$name/postmaster.pid")"
  t0=$(now_ms)
  kill -KILL "$pid"
  printf '{"n":%d,"fault":"failover","phase":"fault","t":%s,"mid_stream":%s}\n' "$k" "$t0" "$mid" >>"$out/events.log"
  log "kill $k: SIGKILL postmaster $pid of $name, the primary (gateway stream in flight: $mid)"
  for ((i = 0; i < 600; i++)); do
    new="$(primary_rest)" && [[ "$new" != "$rest" ]] && break
    sleep 0.1
  done
  t1=$(now_ms)
  new="$(primary_rest)" && [[ "$new" != "$rest" ]] || die "no new primary within 60 s of kill $k"
  printf '{"n":%d,"fault":"failover","phase":"restarted","t":%s}\n' "$k" "$t1" >>"$out/events.log"
  promoted+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')")
  log "kill $k: $(node_of_rest "$new") is primary after ${promoted[-1]}s"
  # The killed node comes back as the synchronous standby (pg_rewind) before the next kill: Patroni promotes only a
  # synchronous standby, so without one the next kill would find nothing to fail over to.
  for ((i = 0; i < 1200; i++)); do
    curl -fsS --max-time 1 "http://127.0.0.1:$rest/sync" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS --max-time 1 "http://127.0.0.1:$rest/sync" >/dev/null 2>&1 || die "$name did not come back as the synchronous standby"
  rejoined+=("$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')")
  log "kill $k: $name is the synchronous standby again ${rejoined[-1]}s after the kill"
done
sleep "$INTERVAL"
log "kills done; the load client retries what is still open (up to ${CHAOS_DRAIN_SECONDS:-90} s)"
kill -TERM "$load_pid"
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=""
(( load_rc == 0 )) || { tail -n 20 "$out/load.log" >&2; die "the load client failed (exit $load_rc)"; }

# ---------- the checks, on the new primary ----------
log "checking on the new primary (waiting up to ${CHAOS_SETTLE_SECONDS:-60} s for the service to settle interrupted calls)"
verdict=0
CHAOS_KILLS=0 CHAOS_PG_STOPS=0 CHAOS_FAILOVERS="$KILLS" CHAOS_MODE=ha CHAOS_FIGURES="$out/figures.json" \
  node scripts/chaos/check.mjs verdict "$(primary_conn)" "$out/setup.json" "$out/baseline.json" "$out/load.json" \
  "$out/served.log" "$out/events.log" "$dll" | tee "$out/verdict.txt" || verdict=1
[[ -s "$out/figures.json" ]] || die "the checks wrote no figures (see above)"
log "seconds from SIGKILL to a new primary: ${promoted[*]}; to the killed node back as synchronous standby: ${rejoined[*]}"

fig() { node -e '
const f = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const v = process.argv[2] === "without_service" ? f.faults.map((x) => (x.without_service_ms / 1000).toFixed(1)).join(" ")
  : process.argv[2] === "mid_stream_faults" ? f.faults.filter((x) => x.mid_stream).length : f[process.argv[2]];
console.log(v);' "$out/figures.json" "$1"; }
without_service="$(fig without_service)"
echo "failover: without service per failover (s): $without_service"

if [[ -n "${CHAOS_WRITE_DOCS:-}" ]]; then
  doc=docs/RELIABILITY.md
  [[ -f "$doc" ]] || printf '# Reliability\n' > "$doc"
  section="$(cat <<MD
<!-- failover:begin (written by scripts/chaos-ha.sh; edit the script, not this section) -->
## Failover

\`CHAOS_WRITE_DOCS=1 scripts/chaos-ha.sh\` (also \`scripts/chaos.sh ha\`) on $(date -u +%Y-%m-%d), $(nproc) cores, as root:
etcd and two PostgreSQL 15 nodes under Patroni (\`synchronous_mode: true\`, \`primary_start_timeout: 0\`), one
service instance (Release) on \`Host=…:$((HA_PORT_BASE + 2)),…:$((HA_PORT_BASE + 3));Target Session Attributes=primary\`,
the crash mode's stub provider, and its load client (\`scripts/chaos/load.mjs\`, seed $SEED): ${CHAOS_SINGLE_WORKERS:-6}
single-report workers, ${CHAOS_BATCH_WORKERS:-2} batch workers and ${CHAOS_GATEWAY_WORKERS:-4} workers sending billed gateway
calls through \`/v1/forward\` with a forward token, half of them streamed. The primary's postmaster was killed with
SIGKILL $KILLS times, each after ${INTERVAL} s of load and once the node killed before was back as the synchronous
standby; $(fig mid_stream_faults) of the kills landed while the provider was streaming a gateway answer. Load average at the end:
$(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine count too).

| figure | value |
|---|---|
| acknowledged | $(fig acked_reports) reports ($(fig acked_single) single, $(fig acked_batch) batch items), $(fig acked_gateway) gateway calls ($(fig acked_gateway_streamed) streamed) |
| lost / doubled (reports and gateway calls) | $(fig lost) / $(fig doubled) |
| calls the provider served / of them unbilled / billed but never served | $(fig served) / $(fig unbilled) / $(fig billed_not_served) |
| calls sent to the provider twice (one call id accepted twice) | $(fig sent_twice) |
| holds still reserving after the run | $(fig holds_reserving) (settled $(fig settled_in_s) s after the load stopped) |
| HTTP 500 / 503 answers | $(fig http500) / $(fig http503) |
| \`ledger verify\` on the new primary | $(fig verify) |
| seconds from SIGKILL until Patroni's REST API named a new primary (polled, so an upper bound), per kill | ${promoted[*]} |
| seconds without service per failover (longest stretch with no answer acknowledged, from the kill to the next) | $without_service |
| seconds from SIGKILL to the killed node being the synchronous standby again | ${rejoined[*]} |
| checks of \`scripts/chaos/check.mjs\` passed / failed | $(fig checks_passed) / $(fig checks_failed) |

Why nothing acknowledged is lost: a commit returns only after the synchronous standby has flushed it, and Patroni
promotes only that standby. Why nothing is doubled: \`(merchant, request_id)\` is unique, so a retry of a report
whose commit landed but whose answer was lost is answered from the stored original. The service itself retries
posting while no primary answers (\`Database:Retry\`, about 20 s), so most clients see a slow answer rather than an
error; past that they get a 503 and retry themselves. Why a gateway call reaches the provider once: the service
never repeats the provider call. The call's record (and its hold, when it takes one) is written before the provider
is asked — when no primary answers, the call is refused with a 503 and never sent; what is retried across the failover is only the
usage report after the answer, and a call whose billing still could not be written is billed later by the settle
worker from its stored record. A client that retries a gateway call whose outcome it does not know makes a new call,
billed on its own (the load client gives each attempt its own \`x-chaos-call\` id, which is how the check counts
them). Seconds without service can be shorter than the time to a new primary: answers whose commit landed before the
kill still arrive, and the script polls Patroni from a busy machine.
<!-- failover:end -->
MD
)"
  if grep -q 'failover:begin' "$doc"; then
    node -e 'const fs=require("fs");const [f,s]=process.argv.slice(1);const t=fs.readFileSync(f,"utf8");fs.writeFileSync(f,t.replace(/<!-- failover:begin[\s\S]*?failover:end -->/,()=>s));' "$doc" "$section"
  else
    printf '\n%s\n' "$section" >> "$doc"
  fi
  log "wrote the Failover section of $doc"
fi
log "output in $out"
if (( verdict )); then echo "chaos ha: FAIL"; exit 1; fi
echo "chaos ha: PASS"
