#!/usr/bin/env bash
# scripts/chaos.sh — the fault suite. docs/RELIABILITY.md says what each mode does and what it found.
#
#   scripts/chaos.sh [crash]     kill the service (SIGKILL) and stop PostgreSQL (immediate) under load, then check the
#                                database: nothing acknowledged lost, nothing doubled, every served gateway call billed
#   scripts/chaos.sh fuzz [N]    N malformed requests (default 5000) over every route of openapi.yaml while another
#                                merchant's valid reports flow
#   scripts/chaos.sh ci          the bounded run of scripts/test.sh: fuzz 2000, then one kill and one PostgreSQL stop
#   scripts/chaos.sh ha [ARGS]   the failover suite, scripts/chaos-ha.sh, when this checkout has it
#
# Starts its own PostgreSQL (fsync on, data under /tmp, purged afterwards), a stub provider (bench/stub-provider.mjs,
# streaming its answers over CHAOS_STREAM_GAP_MS so kills land mid-stream, logging every call it serves) and the
# service, built in Release. The load client, fuzzer and checks are node programs in scripts/chaos/ (npm ci installs their
# two packages, pg and yaml). Prints "PASS name: ..." / "FAIL name: ..." per check and ends with one verdict line;
# exits non-zero when any check failed. Everything goes to 127.0.0.1; every loop is bounded.
#
# Env (optional): CHAOS_SEED=1  CHAOS_KILLS=20  CHAOS_PG_STOPS=5  CHAOS_INTERVAL_SECONDS=4 (load between faults)
#   CHAOS_PG_DOWN_SECONDS=3  CHAOS_SETTLE_SECONDS=60 (the service's window to bill interrupted calls and release
#   their holds)  CHAOS_DRAIN_SECONDS=90 (retrying open work after the faults)  CHAOS_STREAM_GAP_MS=1000
#   CHAOS_PG_PORT (default: free from 25700)  CHAOS_SERVICE_PORT (default: free from 25720)
#   CHAOS_SERVICE_ENV='Name=value ...' (more service settings)
#   CHAOS_CONFIGURATION=Release|Debug  CHAOS_NO_BUILD=1 (use the existing build)  CHAOS_OUT=DIR (default
#   scripts/chaos/results/<UTC time>)  CHAOS_KEEP=1 (keep the cluster's data)
set -Eeuo pipefail
LAVA_SCRIPT=chaos
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

mode="${1:-crash}"
case "$mode" in
  ha)
    # The failover suite lives in a script of its own; this is its entry point so there is one command to remember.
    [[ -x scripts/chaos-ha.sh || -f scripts/chaos-ha.sh ]] || die "no scripts/chaos-ha.sh in this checkout: the ha mode is not available"
    exec bash scripts/chaos-ha.sh "${@:2}" ;;
  crash | ci) ;;
  fuzz)
    fuzz_cases="${2:-5000}"
    [[ "$fuzz_cases" =~ ^[0-9]+$ && "$fuzz_cases" -ge 1 && "$fuzz_cases" -le 1000000 ]] || die "fuzz N: N must be 1-1000000" ;;
  -h | --help) sed -n '2,/^set -E/p' "$0" | sed '$d'; exit 0 ;;
  *) die "unknown mode '$mode' (crash, fuzz [N], ci, ha)" ;;
esac
if [[ "$mode" == ci ]]; then
  fuzz_cases="${CHAOS_FUZZ_CASES:-2000}"
  export CHAOS_KILLS="${CHAOS_KILLS:-1}" CHAOS_PG_STOPS="${CHAOS_PG_STOPS:-1}"
fi
export CHAOS_KILLS="${CHAOS_KILLS:-20}" CHAOS_PG_STOPS="${CHAOS_PG_STOPS:-5}"
seed="${CHAOS_SEED:-1}"
interval="${CHAOS_INTERVAL_SECONDS:-4}"
pg_down="${CHAOS_PG_DOWN_SECONDS:-3}"
stream_gap="${CHAOS_STREAM_GAP_MS:-1000}"
configuration="${CHAOS_CONFIGURATION:-Release}"
for v in "$seed" "$CHAOS_KILLS" "$CHAOS_PG_STOPS" "$interval" "$pg_down" "$stream_gap"; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "CHAOS_SEED, CHAOS_KILLS, CHAOS_PG_STOPS, CHAOS_INTERVAL_SECONDS, CHAOS_PG_DOWN_SECONDS and CHAOS_STREAM_GAP_MS are whole numbers"
done
(( CHAOS_KILLS <= 200 && CHAOS_PG_STOPS <= 50 && interval <= 120 && pg_down <= 60 )) || die "at most 200 kills, 50 PostgreSQL stops, 120 s between faults, 60 s down"

require_dotnet
command -v node >/dev/null 2>&1 || die "node is not on PATH (Node.js >= 20 is needed)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"
command -v curl >/dev/null 2>&1 || die "curl is missing"

out="${CHAOS_OUT:-scripts/chaos/results/$(date -u +%Y%m%dT%H%M%SZ)-$mode}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
pg_port="${CHAOS_PG_PORT:-$(free_port 25700)}" || die "no free port for PostgreSQL"
svc_port="${CHAOS_SERVICE_PORT:-$(free_port 25720)}" || die "no free port for the service"
url="http://127.0.0.1:$svc_port"
datadir="${TMPDIR:-/tmp}/lava-chaos-pg-$pg_port"
svc_pid="" stub_pid="" load_pid=""
now_ms() { date +%s%3N; }

cleanup() {
  local rc=$?
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null
  if [[ -n "$svc_pid" ]] && kill -0 "$svc_pid" 2>/dev/null; then
    kill "$svc_pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$svc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$svc_pid" 2>/dev/null || true
  fi
  [[ -n "$stub_pid" ]] && kill "$stub_pid" 2>/dev/null
  if [[ "${CHAOS_KEEP:-0}" == 1 ]]; then scripts/pg-down.sh "$datadir" >/dev/null 2>&1 || true
  else scripts/pg-down.sh "$datadir" --purge >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# ---------- tools, build ----------
log "installing the harness's packages (npm ci in scripts/chaos/)"
(cd scripts/chaos && npm ci --no-audit --no-fund --loglevel=error) >"$out/npm.log" 2>&1 || { cat "$out/npm.log" >&2; die "npm ci failed in chaos/"; }
if [[ "${CHAOS_NO_BUILD:-0}" != 1 ]]; then
  log "building the service ($configuration)"
  dotnet build Lava.Billing/Lava.Billing.csproj -c "$configuration" -nologo -clp:ErrorsOnly >&2
fi
dll="Lava.Billing/bin/$configuration/net10.0/Lava.Billing.dll"
[[ -f "$dll" ]] || die "no $dll: build it first"

# ---------- PostgreSQL, fresh, fsync on ----------
log "PostgreSQL on 127.0.0.1:$pg_port with fsync on, data in $datadir"
scripts/pg-down.sh "$datadir" --purge >/dev/null 2>&1 || true
pg_up() { PGUP_FSYNC=on PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw scripts/pg-up.sh "$datadir" "$pg_port" 2>>"$out/pg-up.log"; }
conn="$(pg_up)" || { cat "$out/pg-up.log" >&2; die "PostgreSQL did not start"; }
pg_bin="/usr/lib/postgresql/$(cat "$datadir/PG_VERSION")/bin"
[[ -x "$pg_bin/pg_ctl" ]] || pg_bin="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
# An immediate stop: every server process ends at once, nothing is flushed or checkpointed; the next start recovers
# from the WAL, as after a power cut (fsync is on, so whatever was committed is on disk).
pg_stop_immediate() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && HOME=/ runuser -u "$(stat -c %U "$datadir")" -- "$pg_bin/pg_ctl" stop -D "$datadir" -m immediate -w -t 30 -s) >&2
  else
    (cd / && "$pg_bin/pg_ctl" stop -D "$datadir" -m immediate -w -t 30 -s) >&2
  fi
}
# Request logging off (warnings and errors stay): the fuzzer reads this log for stack traces, case by case.
svc_env=(env ConnectionStrings__Billing="$conn" ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Microsoft.AspNetCore=Warning
         Logging__Console__TimestampFormat='HH:mm:ss.fff ')

# ---------- merchants, stub provider, service ----------
create_merchant() {
  local json
  json="$("${svc_env[@]}" dotnet "$dll" merchants create --name "$1" 2>>"$out/cli.log")" || die "merchants create --name $1 failed (see $out/cli.log)"
  [[ "$json" == *'"secret_key":"aks_'* ]] || die "merchants create printed no secret key: $json"
  printf '%s' "$json"
}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

: >"$out/served.log" ; : >"$out/stub.out"
node bench/stub-provider.mjs 0 "$stream_gap" "$out/served.log" >"$out/stub.out" 2>>"$out/stub.log" &
stub_pid=$!
stub_url=""
for ((i = 0; i < 100; i++)); do
  stub_url="$(head -n1 "$out/stub.out" 2>/dev/null || true)"
  [[ "$stub_url" == http://127.0.0.1:*[0-9] ]] && break
  stub_url=""
  kill -0 "$stub_pid" 2>/dev/null || die "the stub provider exited; see $out/stub.log"
  sleep 0.1
done
[[ -n "$stub_url" ]] || die "the stub provider did not start within 10 s"
# The gateway's windows, shortened to fit a test run: the provider timeout (the stub answers at once and streams with
# CHAOS_STREAM_GAP_MS pauses), and how long a call may stay silent before recovery treats it as cut by a crash and
# settles it (settings a service without such recovery ignores). CHAOS_SERVICE_ENV adds or overrides settings.
svc_env+=(Forward__AllowedUpstreams__0="$stub_url/v1" Forward__ManagedKeys__127.0.0.1=sk-chaos
          Forward__TimeoutMs=5000 Forward__RecoveryMarginMs=5000 Forward__SettleIntervalMs=1000
          Forward__SettleLeaseMs=10000)
if [[ -n "${CHAOS_SERVICE_ENV:-}" ]]; then read -ra extra_env <<<"$CHAOS_SERVICE_ENV"; svc_env+=("${extra_env[@]}"); fi

start_service() {
  "${svc_env[@]}" dotnet "$dll" --urls "$url" >>"$out/service.log" 2>&1 &
  svc_pid=$!
}
wait_ready() { # $1 = seconds
  for ((i = 0; i < $1 * 10; i++)); do
    curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && return 0
    kill -0 "$svc_pid" 2>/dev/null || { tail -n 40 "$out/service.log" >&2; die "the service exited; see $out/service.log"; }
    sleep 0.1
  done
  return 1
}
log "stub provider on $stub_url; starting the service on $url (log: $out/service.log)"
start_service
wait_ready 60 || die "the service was not ready within 60 s"

verdicts=0
run_fuzz() {
  log "fuzz: $fuzz_cases cases, seed $seed"
  local fuzz_json victim_json other_json
  fuzz_json="$(create_merchant "chaos fuzz")"; victim_json="$(create_merchant "chaos victim")"; other_json="$(create_merchant "chaos other")"
  node scripts/chaos/setup.mjs "$url" "$(json_field secret_key <<<"$fuzz_json")" "$(json_field merchant_id <<<"$fuzz_json")" 2 fuzz >"$out/fuzz-setup.json"
  node scripts/chaos/setup.mjs "$url" "$(json_field secret_key <<<"$victim_json")" "$(json_field merchant_id <<<"$victim_json")" 4 victim >"$out/victim-setup.json"
  node scripts/chaos/setup.mjs "$url" "$(json_field secret_key <<<"$other_json")" "$(json_field merchant_id <<<"$other_json")" 2 other >"$out/other-setup.json"
  CHAOS_DLL="$dll" node scripts/chaos/fuzz.mjs "$url" "$conn" "$fuzz_cases" "$seed" "$out" "$stub_url" | tee "$out/fuzz-verdict.txt" || verdicts=1
}

run_crash() {
  local total=$((CHAOS_KILLS + CHAOS_PG_STOPS)) chaos_json faults=() n fault every mid t
  log "crash: $CHAOS_KILLS service kills and $CHAOS_PG_STOPS PostgreSQL stops, ${interval} s of load between faults"
  chaos_json="$(create_merchant "chaos crash")"
  node scripts/chaos/setup.mjs "$url" "$(json_field secret_key <<<"$chaos_json")" "$(json_field merchant_id <<<"$chaos_json")" 12 chaos >"$out/crash-setup.json"
  node scripts/chaos/check.mjs baseline "$conn" "$out/crash-setup.json" "$out/crash-baseline.json"
  : >"$out/events.log"
  node scripts/chaos/load.mjs "$url" "$out/crash-setup.json" "$stub_url" "$out/load.json" "$seed" 2>"$out/load.log" &
  load_pid=$!

  # The faults in order: PostgreSQL stops spread evenly among the kills.
  every=$(( CHAOS_PG_STOPS > 0 ? (total + CHAOS_PG_STOPS - 1) / CHAOS_PG_STOPS : total + 1 ))
  local kills_left=$CHAOS_KILLS stops_left=$CHAOS_PG_STOPS
  for ((n = 1; n <= total; n++)); do
    if (( stops_left > 0 && (n % every == 0 || kills_left == 0) )); then faults+=(pg-stop); ((stops_left--)) || true
    else faults+=(kill); ((kills_left--)) || true; fi
  done
  RANDOM=$seed
  n=0
  for fault in "${faults[@]}"; do
    n=$((n + 1))
    sleep "$interval.$((RANDOM % 10))"
    kill -0 "$load_pid" 2>/dev/null || die "the load client exited early; see $out/load.log"
    if [[ "$fault" == kill ]]; then
      # Every other kill (the first included) waits, up to 5 s, for a gateway stream the provider is still sending.
      mid=false
      if (( n % 2 == 1 )); then
        for ((i = 0; i < 100; i++)); do
          if awk '/"stream":true/ { if (/"event":"served"/) s++; else e++ } END { exit !(s > e) }' "$out/served.log"; then mid=true; break; fi
          sleep 0.05
        done
      fi
      t=$(now_ms)
      kill -9 "$svc_pid"
      wait "$svc_pid" 2>/dev/null || true
      printf '{"n":%d,"fault":"kill","phase":"fault","t":%s,"mid_stream":%s}\n' "$n" "$t" "$mid" >>"$out/events.log"
      log "fault $n/$total: SIGKILL the service (gateway stream in flight: $mid)"
      printf '{"n":%d,"fault":"kill","phase":"restarted","t":%s}\n' "$n" "$(now_ms)" >>"$out/events.log"
      start_service
      wait_ready 60 || die "the service was not ready within 60 s of restart $n"
      printf '{"n":%d,"fault":"kill","phase":"ready","t":%s}\n' "$n" "$(now_ms)" >>"$out/events.log"
    else
      t=$(now_ms)
      pg_stop_immediate || die "pg_ctl stop -m immediate failed"
      printf '{"n":%d,"fault":"pg-stop","phase":"fault","t":%s}\n' "$n" "$t" >>"$out/events.log"
      log "fault $n/$total: PostgreSQL stopped (immediate), down for $pg_down s"
      sleep "$pg_down"
      printf '{"n":%d,"fault":"pg-stop","phase":"restarted","t":%s}\n' "$n" "$(now_ms)" >>"$out/events.log"
      pg_up >/dev/null || { tail -n 20 "$out/pg-up.log" >&2; die "PostgreSQL did not restart"; }
    fi
  done
  sleep "$interval"
  log "faults done; the load client retries what is still open (up to ${CHAOS_DRAIN_SECONDS:-90} s)"
  kill -TERM "$load_pid"
  local load_rc=0
  wait "$load_pid" || load_rc=$?
  load_pid=""
  (( load_rc == 0 )) || { tail -n 20 "$out/load.log" >&2; die "the load client failed (exit $load_rc)"; }
  log "checking the database (waiting up to ${CHAOS_SETTLE_SECONDS:-60} s for the service to settle interrupted calls)"
  node scripts/chaos/check.mjs verdict "$conn" "$out/crash-setup.json" "$out/crash-baseline.json" "$out/load.json" \
    "$out/served.log" "$out/events.log" "$dll" | tee "$out/crash-verdict.txt" || verdicts=1
}

case "$mode" in
  fuzz) run_fuzz ;;
  crash) run_crash ;;
  ci) run_fuzz; run_crash ;;
esac
log "output in $out"
if (( verdicts )); then echo "chaos $mode: FAIL"; exit 1; fi
echo "chaos $mode: PASS"
