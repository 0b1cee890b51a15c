#!/usr/bin/env bash
# scripts/bench.sh — the benchmark suite. One command, writes docs/BENCHMARKS.md.
#   scripts/bench.sh            every scenario (about 30 min), writes docs/BENCHMARKS.md (keeping its profile section)
#   scripts/bench.sh profile    where PostgreSQL's work goes per report (bench/profile.sh, a few minutes): rewrites only
#                               the profile section of docs/BENCHMARKS.md
#
# Starts its own PostgreSQL (fsync on: durability-honest numbers) on port 25642 with its data under /tmp, builds and
# starts the service in Release on loopback port BENCH_PG_PORT + 1000, seeds merchants, customers and a meter with
# psql, and loads it from a second process: wrk (Debian's package, installed when missing) with the Lua scripts in
# bench/wrk/, and pgbench with the scripts bench/pgbench/reports.sh generates. The gateway scenarios add a stub provider
# (bench/stub-provider.mjs, node) and time streams' first bytes with bench/ttfb.mjs; the export scenario seeds 1M
# ledger entries (bench/export-seed.sql) and streams them as CSV with curl. Every scenario: a short warm-up, then
# BENCH_RUNS runs of BENCH_SECONDS each (the export: BENCH_RUNS whole exports); the tables show the median of the runs.
# Raw output lands in bench/results/<UTC time>/.
# All traffic goes to 127.0.0.1; every loop is bounded; the whole run stops itself after BENCH_MAX_SECONDS.
#
# Env (optional): BENCH_SECONDS=10 BENCH_RUNS=3 BENCH_WARMUP_SECONDS=3 BENCH_PG_PORT=25642 BENCH_MAX_SECONDS=2100
#                 BENCH_OUT=docs/BENCHMARKS.md BENCH_KEEP=1 (keep the cluster's data directory afterwards)
#                 BENCH_SHARED_BUFFERS=1GB (PostgreSQL's shared_buffers)
#                 BENCH_FLOOD_SINGLES=64 BENCH_FLOOD_BATCHES=16 (the neighbour scenarios' flood: connections of single
#                 reports and of batches of 1,000; 0 leaves that part out)
#                 BENCH_DIRTY_BACKGROUND_BYTES=N (root; the kernel writes dirty pages back from N bytes dirty, e.g. 8388608,
#                 for this run only: see "the kernel's writeback" below)
#                 BENCH_ONLY=REGEX (run only the scenarios whose name matches, e.g. '^single-1000' or 'gateway|export';
#                 for trying things: the report then goes to bench/results/<UTC time>/report.md, not docs/BENCHMARKS.md)
#                 BENCH_REPEAT=N (with BENCH_ONLY: the selected scenarios N times, each time on a fresh database, then the
#                 median of each scenario's throughput and each run's deviation from it; 2-9)
#                 BENCH_REPEAT_FLOOR=SCENARIO (with BENCH_REPEAT, SCENARIO among those selected, e.g. minimal-1-c32: also
#                 each scenario's throughput divided by that one's in the same run, which takes the machine's speed out)
set -Eeuo pipefail
LAVA_SCRIPT=bench
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet
MODE="${1:-all}"
[[ "$MODE" == all || "$MODE" == profile ]] || die "usage: scripts/bench.sh [profile]"

# The median of the numbers given (the lower middle one of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# BENCH_REPEAT: this script again, N times, each a fresh cluster and database; their medians side by side.
if [[ -n "${BENCH_REPEAT:-}" ]]; then
  [[ "$BENCH_REPEAT" =~ ^[2-9]$ && -n "${BENCH_ONLY:-}" && "$MODE" == all ]] \
    || die "BENCH_REPEAT is 2-9 and needs BENCH_ONLY (a scenario or a few)"
  repeat_dir="bench/results/repeat-$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$repeat_dir"
  for ((r = 1; r <= BENCH_REPEAT; r++)); do
    log "repeat $r of $BENCH_REPEAT"
    BENCH_REPEAT= BENCH_OUT="$repeat_dir/report-$r.md" BENCH_MEDIANS="$repeat_dir/medians-$r.tsv" "$0" all
  done
  {
    echo "BENCH_ONLY='$BENCH_ONLY' BENCH_REPEAT=$BENCH_REPEAT: reports/s (or calls/s) per run, each on a fresh database"
    printf '%-28s %10s  %s\n' scenario median "runs (deviation from the median)"
    cut -f1 "$repeat_dir"/medians-*.tsv | sort -u | while read -r name; do
      # Each run's throughput and the load average after it (columns 1 and 10 of a scenario's medians).
      runs=($(for f in "$repeat_dir"/medians-*.tsv; do awk -F'\t' -v n="$name" '$1 == n { split($2, c, " "); print c[1] "/" c[10] }' "$f"; done))
      med="$(median "${runs[@]%/*}")"
      printf '%-28s %10s  %s\n' "$name" "$med" "$(for r in "${runs[@]}"; do awk -v v="${r%/*}" -v l="${r#*/}" -v m="$med" 'BEGIN { printf "%s (%+.0f%%, load %s) ", v, (m > 0 ? (v - m) * 100 / m : 0), l }'; done)"
    done
    # The machine's own speed moves between runs: each scenario's throughput divided by the floor measured in the same
    # run (BENCH_REPEAT_FLOOR, a scenario selected with it, e.g. minimal-1-c32) takes that out.
    if [[ -n "${BENCH_REPEAT_FLOOR:-}" ]]; then
      echo "the same, divided by $BENCH_REPEAT_FLOOR in the same run"
      cut -f1 "$repeat_dir"/medians-*.tsv | sort -u | grep -vx -- "$BENCH_REPEAT_FLOOR" | while read -r name; do
        ratios=($(for f in "$repeat_dir"/medians-*.tsv; do awk -F'\t' -v n="$name" -v fl="$BENCH_REPEAT_FLOOR" '
          { split($2, c, " "); t[$1] = c[1] } END { if ((n in t) && t[fl] > 0) printf "%.3f\n", t[n] / t[fl] }' "$f"; done))
        (( ${#ratios[@]} > 0 )) || continue
        med="$(median "${ratios[@]}")"
        printf '%-28s %10s  %s\n' "$name" "$med" "$(for v in "${ratios[@]}"; do awk -v v="$v" -v m="$med" 'BEGIN { printf "%s (%+.0f%%) ", v, (m > 0 ? (v - m) * 100 / m : 0) }'; done)"
      done
    fi
  } | tee "$repeat_dir/summary.txt"
  exit 0
fi

RUN_SECONDS="${BENCH_SECONDS:-10}"
RUNS="${BENCH_RUNS:-3}"
WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
PG_PORT="${BENCH_PG_PORT:-25642}"
PG_SHARED_BUFFERS="${BENCH_SHARED_BUFFERS:-1GB}"   # what an operator would give PostgreSQL on this 23 GB machine, at least; the export reads ~400 MB
MAX_SECONDS="${BENCH_MAX_SECONDS:-2100}"
results="bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
# A partial run (BENCH_ONLY) writes its own report: docs/BENCHMARKS.md holds whole runs only.
if [[ -n "${BENCH_ONLY:-}" && "$MODE" == all ]]; then OUT="${BENCH_OUT:-$results/report.md}"; else OUT="${BENCH_OUT:-docs/BENCHMARKS.md}"; fi
[[ "$PG_PORT" =~ ^[0-9]+$ ]] && (( PG_PORT >= 1024 && PG_PORT <= 30000 )) || die "BENCH_PG_PORT must be 1024-30000 (the service takes it + 1000 and + 2000)"
[[ "$RUN_SECONDS" =~ ^[0-9]+$ && "$RUNS" =~ ^[0-9]+$ && "$WARMUP_SECONDS" =~ ^[0-9]+$ && "$MAX_SECONDS" =~ ^[0-9]+$ ]] \
  || die "BENCH_SECONDS, BENCH_RUNS, BENCH_WARMUP_SECONDS and BENCH_MAX_SECONDS are whole numbers"
(( RUN_SECONDS >= 1 && RUN_SECONDS <= 60 && RUNS >= 1 && RUNS <= 9 && WARMUP_SECONDS <= 30 )) \
  || die "BENCH_SECONDS must be 1-60, BENCH_RUNS 1-9, BENCH_WARMUP_SECONDS at most 30"

CUSTOMERS=1000
GC_CUSTOMERS=3200          # group commit: 64 clients x 50 reports, each client on its own customers
BATCH_CONNECTIONS=2        # concurrent batch calls (each posts its items 128 to a transaction, one transaction after another)
QUIET_CUSTOMERS=100        # the neighbour scenarios' quiet merchant
QUIET_CONNECTIONS=4        # its connections, each sending a report every QUIET_PACE_MS after the last one's answer
QUIET_PACE_MS=10
FLOOD_SINGLES="${BENCH_FLOOD_SINGLES:-64}"   # the neighbour flood: connections sending single reports,
FLOOD_BATCHES="${BENCH_FLOOD_BATCHES:-16}"   # and connections sending batches of 1,000 (0: none)
[[ "$FLOOD_SINGLES" =~ ^[0-9]+$ && "$FLOOD_BATCHES" =~ ^[0-9]+$ ]] || die "BENCH_FLOOD_SINGLES and BENCH_FLOOD_BATCHES are whole numbers"
GATEWAY_CONNECTIONS=16     # the gateway's load; also measured at 1 connection, where nothing queues
EXPORT_CUSTOMERS=100       # the export merchant: 100 customers, 250,000 usage postings of 4 entries each,
EXPORT_TRANSACTIONS=250000 # seeded in chunks of 25,000 postings (one transaction each)
EXPORT_CHUNK=25000
EXPORT_ENTRIES=$(( EXPORT_TRANSACTIONS * 4 + EXPORT_CUSTOMERS * 2 ))   # + bench/seed.sql's credit grants
started_at=$(date +%s)
command_line="scripts/bench.sh"
if [[ "$RUN_SECONDS" != 10 || "$RUNS" != 3 || "$WARMUP_SECONDS" != 3 ]]; then
  command_line="BENCH_SECONDS=$RUN_SECONDS BENCH_RUNS=$RUNS BENCH_WARMUP_SECONDS=$WARMUP_SECONDS scripts/bench.sh"
fi

# ---------- tools ----------
if ! command -v wrk >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || die "wrk is missing and this is not root: apt-get install wrk"
  log "installing wrk (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; } \
    || die "apt-get install wrk failed"
fi
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[[ -x "$pg_bin/pgbench" && -x "$pg_bin/psql" ]] || die "pgbench/psql not found under /usr/lib/postgresql/*/bin"
command -v curl >/dev/null 2>&1 || die "curl is missing"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package: time)"
# Is scenario $1 part of this run (BENCH_ONLY)?
selected() { [[ -z "${BENCH_ONLY:-}" || "$1" =~ $BENCH_ONLY ]]; }
gateway_selected=0
for s in direct customer byok; do
  for c in 1 "$GATEWAY_CONNECTIONS"; do selected "gateway-$s-c$c" && gateway_selected=1; done
  selected "gateway-ttfb-$s-c$GATEWAY_CONNECTIONS" && gateway_selected=1
done
[[ "$MODE" == profile ]] && gateway_selected=1   # the profile has a phase of billed gateway calls
if (( gateway_selected )); then command -v node >/dev/null 2>&1 || die "node is missing (Debian package: nodejs); the gateway scenarios need it"; fi
clk_tck="$(getconf CLK_TCK)"

# ---------- workspace, cleanup ----------
mkdir -p "$results"
datadir="${TMPDIR:-/tmp}/lava-bench-pg-$PG_PORT"
admin_pw="admin_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
svc_pid=""
stub_pid=""
second_pid=""
cleanup() {
  local rc=$?
  if [[ -n "${dirty_found_ratio:-}" ]]; then restore_writeback || true; fi
  if [[ -n "$stub_pid" ]]; then kill "$stub_pid" 2>/dev/null || true; fi
  if [[ -n "$second_pid" ]]; then kill "$second_pid" 2>/dev/null || true; fi
  if [[ -n "$svc_pid" ]] && kill -0 "$svc_pid" 2>/dev/null; then
    kill "$svc_pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$svc_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then scripts/pg-down.sh "$datadir" >/dev/null 2>&1 || true
  else scripts/pg-down.sh "$datadir" --purge >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# ---------- the kernel's writeback ----------
# Dirty page-cache pages are written back in bursts (30 s old, by default, or 10% of memory dirty), and a commit's
# WAL flush waits behind such a burst: 100-300 ms on this machine (docs/operations.md, "The database host's disk
# flushes"). BENCH_DIRTY_BACKGROUND_BYTES=N (root) starts the writeback once N bytes are dirty, for this run; the
# settings found are put back when it ends. The machine table says which was in effect.
vm=/proc/sys/vm
if [[ -n "${BENCH_DIRTY_BACKGROUND_BYTES:-}" ]]; then
  [[ "$BENCH_DIRTY_BACKGROUND_BYTES" =~ ^[1-9][0-9]{0,15}$ ]] && (( BENCH_DIRTY_BACKGROUND_BYTES >= 1048576 )) \
    || die "BENCH_DIRTY_BACKGROUND_BYTES is a number of bytes, at least 1048576"
  [[ $EUID -eq 0 ]] || die "BENCH_DIRTY_BACKGROUND_BYTES needs root: it writes $vm/dirty_background_bytes"
  dirty_found_bytes="$(cat "$vm/dirty_background_bytes")"
  dirty_found_ratio="$(cat "$vm/dirty_background_ratio")"
  restore_writeback() {
    # Writing one of the pair zeroes the other: put back whichever was in use.
    if (( dirty_found_bytes > 0 )); then echo "$dirty_found_bytes" > "$vm/dirty_background_bytes"
    else echo "$dirty_found_ratio" > "$vm/dirty_background_ratio"; fi
  }
  echo "$BENCH_DIRTY_BACKGROUND_BYTES" > "$vm/dirty_background_bytes"
  command_line="BENCH_DIRTY_BACKGROUND_BYTES=$BENCH_DIRTY_BACKGROUND_BYTES $command_line"
fi
dirty_bytes="$(cat "$vm/dirty_background_bytes")"
if (( dirty_bytes > 0 )); then writeback="from $(( dirty_bytes / 1048576 )) MB dirty"
else writeback="from $(cat "$vm/dirty_background_ratio")% of memory dirty"; fi
writeback="$writeback, or $(( $(cat "$vm/dirty_expire_centisecs") / 100 )) s old"

# ---------- PostgreSQL, fresh every run ----------
log "PostgreSQL on 127.0.0.1:$PG_PORT with fsync on, shared_buffers $PG_SHARED_BUFFERS, data in $datadir"
scripts/pg-down.sh "$datadir" --purge >/dev/null 2>&1 || true
conn="$(PGUP_FSYNC=on PGUP_SHARED_BUFFERS="$PG_SHARED_BUFFERS" PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw PGUP_ADMIN_PASSWORD="$admin_pw" scripts/pg-up.sh "$datadir" "$PG_PORT")"
psql_app() { PGPASSWORD=lava_pw "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U lava -d lava "$@"; }
psql_admin() { PGPASSWORD="$admin_pw" "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d lava "$@"; }
if [[ "$MODE" == profile ]]; then
  # Loaded at start only: the cluster restarts once with them (ALTER SYSTEM outlives pg-up.sh's own settings file).
  psql_admin -c "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, auto_explain" >/dev/null
  scripts/pg-down.sh "$datadir" >/dev/null
  conn="$(PGUP_FSYNC=on PGUP_SHARED_BUFFERS="$PG_SHARED_BUFFERS" PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD=lava_pw PGUP_ADMIN_PASSWORD="$admin_pw" scripts/pg-up.sh "$datadir" "$PG_PORT")"
  psql_admin >/dev/null <<'SQL'
ALTER SYSTEM SET pg_stat_statements.track = 'all';
ALTER SYSTEM SET pg_stat_statements.track_planning = on;
SELECT pg_reload_conf();
SQL
fi

# ---------- service ----------
log "building the service (Release)"
dotnet build Lava.Billing/Lava.Billing.csproj -c Release -nologo -clp:ErrorsOnly >&2
dll="Lava.Billing/bin/Release/net10.0/Lava.Billing.dll"
[[ -f "$dll" ]] || die "build produced no $dll"
svc_env=(env ConnectionStrings__Billing="$conn" ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning
         Logging__LogLevel__Microsoft.AspNetCore=Warning)

create_merchant() { "${svc_env[@]}" dotnet "$dll" merchants create --name "$1" 2>>"$results/service.log"; }
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
merchant_json="$(create_merchant bench)"
merchant="$(json_field merchant_id <<<"$merchant_json")"; key="$(json_field secret_key <<<"$merchant_json")"
gc_json="$(create_merchant bench-group-commit)"
gc_merchant="$(json_field merchant_id <<<"$gc_json")"
[[ -n "$merchant" && -n "$key" && -n "$gc_merchant" ]] || die "merchants create printed no merchant/key"
log "seeding $CUSTOMERS customers for $merchant and $GC_CUSTOMERS for $gc_merchant"
psql_app -v merchant="$merchant" -v customers="$CUSTOMERS" -f bench/seed.sql
psql_app -v merchant="$gc_merchant" -v customers="$GC_CUSTOMERS" -f bench/seed.sql
# The neighbour scenarios' quiet merchant, only when they run (the other scenarios' database stays as it was).
quiet_key=""
if selected neighbour-alone || selected neighbour-flooded; then
  quiet_json="$(create_merchant bench-quiet)"
  quiet_merchant="$(json_field merchant_id <<<"$quiet_json")"; quiet_key="$(json_field secret_key <<<"$quiet_json")"
  [[ -n "$quiet_merchant" && -n "$quiet_key" ]] || die "merchants create printed no merchant/key"
  psql_app -v merchant="$quiet_merchant" -v customers="$QUIET_CUSTOMERS" -f bench/seed.sql
fi

# The service's ports follow from the cluster's, which names this run's data directory, so benches run at once (each
# with its own BENCH_PG_PORT) never pick the same port; probing for a free one could let two pick it in the same instant.
# 1000 and 2000 above: other benches' clusters sit on the ports just above this one.
svc_port=$((PG_PORT + 1000))
port_free "$svc_port" || die "port $svc_port (BENCH_PG_PORT + 1000), the service's, is taken: another bench with BENCH_PG_PORT=$PG_PORT?"
url="http://127.0.0.1:$svc_port"

# The gateway's upstream: a stub provider in its own process, allowed (and the only upstream allowed) at start-up.
stub_url=""
if (( gateway_selected )); then
  node bench/stub-provider.mjs 0 >"$results/stub.out" 2>>"$results/stub.log" &
  stub_pid=$!
  for ((i = 0; i < 100; i++)); do
    stub_url="$(head -n1 "$results/stub.out" 2>/dev/null || true)"
    [[ "$stub_url" == http://127.0.0.1:* ]] && break
    kill -0 "$stub_pid" 2>/dev/null || die "the stub provider exited; see $results/stub.log"
    sleep 0.1
  done
  [[ "$stub_url" == http://127.0.0.1:* ]] || die "the stub provider did not start within 10 s"
  log "stub provider on $stub_url"
  svc_env+=(Forward__AllowedUpstreams__0="$stub_url/v1")
fi
start_service() { # $@ = extra environment for the service
  log "starting the service on $url${1:+ (with ${1%%=*} changed)}"
  "${svc_env[@]}" "$@" dotnet "$dll" --urls "$url" >>"$results/service.log" 2>&1 &
  svc_pid=$!
  for ((i = 0; i < 600; i++)); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$svc_pid" 2>/dev/null || die "the service exited; see $results/service.log"
    sleep 0.1
  done
  curl -fsS "$url/healthz" >/dev/null || die "the service did not come up within 60 s"
}
stop_service() {
  kill "$svc_pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$svc_pid" 2>/dev/null || return 0; sleep 0.1; done
  die "the service (pid $svc_pid) did not stop within 10 s"
}
start_service

# One real report: what the service stored for it (its request row's response and its ledger transaction's compact
# lineage) is what pgbench stores per report, as the service does.
probe="$(curl -fsS -X POST "$url/v1/requests" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"request_id":"probe","customer_id":"cus_bench_0001","meter_slug":"tokens","input_tokens":1234,"output_tokens":345,"metadata":{"bench":"probe"}}')"
[[ "$probe" == *'"status":"completed"'* ]] || die "the probe report failed: $probe"
stored_response="$(psql_app -At -c "SELECT response FROM requests WHERE merchant_id = '$merchant' AND request_id = 'probe'")"
lineage="$(psql_app -At -c "SELECT t.lineage_compact FROM requests r JOIN ledger_transactions t ON t.merchant_id = r.merchant_id AND t.transaction_id = r.transaction_id WHERE r.merchant_id = '$merchant' AND r.request_id = 'probe'")"
[[ -n "$stored_response" && -n "$lineage" ]] || die "the probe report's stored response or lineage was not found"
pg_vars=(-D "period=$(date -u +%Y-%m-01T00:00:00Z)" -D "resp=$stored_response" -D "lineage=$lineage" -D 'meta={"bench":"pgbench"}'
         -D "keyhash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)")

# ---------- measuring ----------
elapsed() { echo $(( $(date +%s) - started_at )); }
# Which commit the report was made from, for its footer; outside a git checkout (a copied tree) it says so.
source_revision() {
  local rev
  rev="$(git rev-parse --short HEAD 2>/dev/null)" || { echo "an unknown commit (not a git checkout)"; return; }
  git diff --quiet HEAD -- "$@" 2>/dev/null && echo "commit $rev" || echo "commit $rev (with local changes)"
}
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v reaped="${2:-0}" '{ print $12 + $13 + (reaped ? $14 + $15 : 0) }' || echo 0; }
pg_ticks() {
  local postmaster t child
  postmaster="$(head -n1 "$datadir/postmaster.pid")"
  t="$(proc_ticks "$postmaster" 1)"
  for child in $(pgrep -P "$postmaster" || true); do t=$((t + $(proc_ticks "$child"))); done
  echo "$t"
}
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
snapshot() { echo "$(proc_ticks "$svc_pid") $(pg_ticks) $(machine_ticks)"; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) }
                                 else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 }
                                 printf "%.2f", v }'; }
checkpoint() { psql_admin -c CHECKPOINT >/dev/null; }
stored_reports() { psql_app -At -c "SELECT count(*) FROM requests"; }

# A run prints: throughput(units/s) p50_ms p99_ms errors svc_ms pg_ms gen_ms busy_ms capacity_ms load1 [extra ...]
# where throughput is reports/s for reports and requests/s otherwise, the *_ms are CPU time during the run (service,
# PostgreSQL, load generator, the whole machine busy, the whole machine's capacity), load1 the load average after, and
# the extra columns a runner's own (run_ttfb: p50 and p99 of the whole stream).
finish_run() { # $1 = output file, $2 = snapshot before, $3 = generator CPU file, $4 = multiplier, $5-$8 = tput p50 p99 errors, rest = extra
  local before=($2) after=($(snapshot)) gen extra="${*:9}"
  gen="$(awk '{ printf "%.0f", ($1 + $2) * 1000 }' "$3")"
  awk -v t="$5" -v k="$4" -v p50="$6" -v p99="$7" -v e="$8" -v tick="$clk_tck" -v gen="$gen" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
      -v s0="${before[0]}" -v s1="${after[0]}" -v p0="${before[1]}" -v p1="${after[1]}" \
      -v b0="${before[2]}" -v b1="${after[2]}" -v w0="${before[3]}" -v w1="${after[3]}" -v extra="$extra" \
    'BEGIN { ms = 1000 / tick; printf "%.1f %s %s %d %.0f %.0f %.0f %.0f %.0f %s%s\n", t * k, p50, p99, e,
             (s1 - s0) * ms, (p1 - p0) * ms, gen, (b1 - b0) * ms, (w1 - w0) * ms, load, (extra == "" ? "" : " " extra) }' | tee "$1.result"
}

# The Lua scripts take a tag as their last argument and build request_ids from it: every run (and warm-up) gets its
# own, or a run would replay the reports of the one before.
run_wrk() { # $1 = output file, $2 = seconds, $3 = connections, $4 = items per call, $5 = lua script, $6 = path or URL, rest = script args
  local out="$1" seconds="$2" connections="$3" items="$4" script="$5" target="$6" before stored_before=0
  [[ "$target" == http://* ]] || target="$url$target"
  shift 6
  # Batches: wrk counts only calls that completed, and a 1,000-item call takes seconds, so the reports stored during
  # the run are counted in the database instead.
  if (( items > 1 )); then stored_before="$(stored_reports)"; fi
  before="$(snapshot)"
  /usr/bin/time -f '%U %S' -o "$out.cpu" wrk -t"$(( connections < 2 ? connections : 2 ))" -c"$connections" -d"${seconds}s" --timeout 30s --latency -s "$script" "$target" -- "$@" "${out##*/}-$(date +%s%N)" >"$out" 2>&1 \
    || die "wrk failed; see $out"
  local tput p50 p99 errors
  tput="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  if (( items > 1 )); then tput="$(awk -v a="$stored_before" -v b="$(stored_reports)" -v s="$seconds" 'BEGIN { printf "%.1f", (b - a) / s }')"; fi
  p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
  p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
  errors="$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")"
  finish_run "$out" "$before" "$out.cpu" 1 "${tput:-0}" "$p50" "$p99" "$errors"
}

# The gateway's own time per call, from the service's /metrics (lava_gateway_added_duration_seconds): the sums and counts
# of its two phases, before the provider is called (checks, price, the hold and the call's record) and after it answered
# (writing the call's usage).
gateway_phases() {
  curl -fsS "$url/metrics" | awk '
    /^lava_gateway_added_duration_seconds_(sum|count)\{/ {
      p = /phase="before"/ ? "b" : (/phase="after"/ ? "a" : ""); if (p == "") next
      if (/_sum\{/) sum[p] += $NF; else count[p] += $NF }
    END { printf "%.9f %d %.9f %d\n", sum["b"], count["b"], sum["a"], count["a"] }'
}
run_wrk_gateway() { # as run_wrk; the row gains the mean µs per call of the before and after phases over the run
  local out="$1" m0 m1 row
  m0="$(gateway_phases)" || die "no /metrics from the service"
  row="$(run_wrk "$@")" || return 1
  m1="$(gateway_phases)" || die "no /metrics from the service"
  row="$row $(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x); split(b, y)
    printf "%.0f %.0f", (y[2] > x[2] ? (y[1] - x[1]) * 1e6 / (y[2] - x[2]) : 0), (y[4] > x[4] ? (y[3] - x[3]) * 1e6 / (y[4] - x[4]) : 0) }')"
  echo "$row" | tee "$out.result"
}

key_id_of() { psql_app -At -c "SELECT secret_key_id FROM secret_keys WHERE merchant_id = '$1' AND revoked_at IS NULL LIMIT 1"; }
run_pgbench() { # $1 = output file, $2 = seconds, $3 = clients, $4 = reports per transaction, $5 = script, $6 = merchant, $7 = protocol, $8 = rate
  local out="$1" seconds="$2" clients="$3" per_txn="$4" script="$5" m="$6" protocol="${7:-prepared}" rate="${8:-}" before paced=()
  rm -f "$out".log.*
  # Paced: transactions started at this rate (per second, Poisson), each client idle between them.
  [[ -z "$rate" ]] || paced=(-R "$rate")
  before="$(snapshot)"
  PGPASSWORD=lava_pw /usr/bin/time -f '%U %S' -o "$out.cpu" "$pg_bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U lava -n -M "$protocol" "${paced[@]}" \
    -c "$clients" -j 2 -T "$seconds" -f "$script" -D "m=$m" -D "keyid=$(key_id_of "$m")" "${pg_vars[@]}" -l --log-prefix="$out.log" lava >"$out" 2>&1 \
    || die "pgbench failed; see $out"
  local tput p50 p99 errors
  tput="$(awk '/^tps = / { print $3 }' "$out")"
  # Nearest-rank percentiles of the per-transaction latencies (microseconds, third column of pgbench's log; paced, it
  # counts from the scheduled start, so the seventh, the lag behind that schedule, is taken off).
  read -r p50 p99 < <(cat "$out".log.* | awk '{ print (NF >= 7 ? $3 - $7 : $3) }' | sort -n | awk '
    function rank(p) { r = NR * p; return r == int(r) ? r : int(r) + 1 }
    { v[NR] = $1 }
    END { if (NR == 0) { print "0 0"; exit } printf "%.2f %.2f\n", v[rank(0.50)] / 1000, v[rank(0.99)] / 1000 }')
  errors="$(awk '/number of failed transactions:/ { n += $5 } END { print n + 0 }' "$out")"
  rm -f "$out".log.*
  finish_run "$out" "$before" "$out.cpu" "$per_txn" "${tput:-0}" "$p50" "$p99" "$errors"
}

# Streamed completions (wrk only times whole responses): bench/ttfb.mjs times each stream's first byte and its end.
run_ttfb() { # $1 = output file, $2 = seconds, $3 = connections, $4 = URL, $5 = mode (direct, customer, byok)
  local out="$1" seconds="$2" connections="$3" target="$4" mode="$5" before
  before="$(snapshot)"
  /usr/bin/time -f '%U %S' -o "$out.cpu" node bench/ttfb.mjs "$target" "$seconds" "$connections" "$mode" "$key" "$CUSTOMERS" >"$out" 2>&1 \
    || die "bench/ttfb.mjs failed; see $out"
  local tput p50 p99 errors total50 total99
  read -r tput p50 p99 errors total50 total99 <"$out" || die "bench/ttfb.mjs printed no result; see $out"
  finish_run "$out" "$before" "$out.cpu" 1 "$tput" "$p50" "$p99" "$errors" "$total50" "$total99"
}

declare -A R            # R[name] = "tput p50 p99 errors svc_ms pg_ms gen_ms busy_ms wall_ms load1 [extra]" (medians per column)
declare -A SKIPPED
# record_medians NAME ROW...: the median of each column over the runs' rows goes to R[NAME].
record_medians() {
  local name="$1" columns col medians=()
  shift
  columns="$(awk '{ print NF; exit }' <<<"$1")"
  for ((col = 1; col <= columns; col++)); do
    medians+=("$(median $(printf '%s\n' "$@" | awk -v c="$col" '{ print $c }'))")
  done
  R[$name]="${medians[*]}"
  log "$name: ${R[$name]}"
}
# scenario NAME RUNNER ARGS...: a warm-up (not recorded), then RUNS runs; medians per column go to R[NAME].
scenario() {
  local name="$1" runner="$2" i col
  shift 2
  if ! selected "$name"; then
    SKIPPED[$name]="not selected"
    return 0
  fi
  if (( $(elapsed) + (RUNS * RUN_SECONDS + WARMUP_SECONDS) > MAX_SECONDS )); then
    log "skipping $name: the run would pass BENCH_MAX_SECONDS=$MAX_SECONDS"
    SKIPPED[$name]="time budget"
    return 0
  fi
  log "$name: warm-up ${WARMUP_SECONDS}s, then $RUNS x ${RUN_SECONDS}s"
  checkpoint
  if (( WARMUP_SECONDS > 0 )); then "$runner" "$results/$name.warmup" "$WARMUP_SECONDS" "$@" >/dev/null || die "$name warm-up failed"; fi
  local rows=() row
  for ((i = 1; i <= RUNS; i++)); do
    row="$("$runner" "$results/$name.run$i" "$RUN_SECONDS" "$@")" || die "$name run $i failed"
    rows+=("$row")
  done
  record_medians "$name" "${rows[@]}"
}

if [[ "$MODE" == profile ]]; then
  source bench/profile.sh
  exit 0
fi

# ---------- scenarios ----------
# On the file system that holds the cluster's WAL (the work tree may sit on another, with other flush costs).
fsync_file="$(dirname "$datadir")/lava-bench-fsync.$$"
fsync_rate="$("$pg_bin/pg_test_fsync" -s 1 -f "$fsync_file" 2>/dev/null | awk '$1 == "fdatasync" && $3 == "ops/sec" { printf "%.0f", $2; exit }' || true)"
rm -f "$fsync_file"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# The first seconds after start run unoptimised code (tiered JIT): a longer warm-up once.
run_wrk "$results/jit.warmup" 10 16 1 bench/wrk/report.lua /v1/requests "$key" "$CUSTOMERS" 0 >/dev/null

for c in 16 64; do scenario "single-1000-c$c" run_wrk "$c" 1 bench/wrk/report.lua /v1/requests "$key" "$CUSTOMERS" 0; done
for c in 16 64; do scenario "single-10-c$c" run_wrk "$c" 1 bench/wrk/report.lua /v1/requests "$key" 10 0; done
for c in 16 64; do scenario "replay20-c$c" run_wrk "$c" 1 bench/wrk/report.lua /v1/requests "$key" "$CUSTOMERS" 20; done
for n in 100 1000; do scenario "batch-$n" run_wrk "$BATCH_CONNECTIONS" "$n" bench/wrk/batch.lua /v1/requests/batch "$key" "$CUSTOMERS" "$n"; done
scenario "healthz-c64" run_wrk 64 1 bench/wrk/healthz.lua /healthz

# Two instances on the one database, the connections split between them (half each), against single-1000-c64.
run_wrk_split() { # $1 = output file, $2 = seconds, $3 = connections in all, rest = report.lua's arguments
  local out="$1" seconds="$2" connections="$3" before
  shift 3
  before="$(snapshot)"
  /usr/bin/time -f '%U %S' -o "$out.a.cpu" wrk -t1 -c"$(( connections / 2 ))" -d"${seconds}s" --timeout 30s --latency -s bench/wrk/report.lua "$url/v1/requests" -- "$@" "${out##*/}-a-$(date +%s%N)" >"$out.a" 2>&1 &
  local a=$!
  /usr/bin/time -f '%U %S' -o "$out.b.cpu" wrk -t1 -c"$(( connections / 2 ))" -d"${seconds}s" --timeout 30s --latency -s bench/wrk/report.lua "$second_url/v1/requests" -- "$@" "${out##*/}-b-$(date +%s%N)" >"$out.b" 2>&1 &
  local b=$!
  wait "$a" || die "wrk failed; see $out.a"
  wait "$b" || die "wrk failed; see $out.b"
  cat "$out.a.cpu" "$out.b.cpu" | awk '{ u += $1; s += $2 } END { print u, s }' > "$out.cpu"
  local tput p50 p99 errors
  tput="$(awk '/^Requests\/sec:/ { t += $2 } END { print t + 0 }' "$out.a" "$out.b")"
  p50="$(printf '%s\n' "$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out.a")")" "$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out.b")")" | sort -g | tail -n1)"
  p99="$(printf '%s\n' "$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out.a")")" "$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out.b")")" | sort -g | tail -n1)"
  errors="$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out.a" "$out.b")"
  # The service CPU column counts the first instance only; the machine's busy share counts both.
  finish_run "$out" "$before" "$out.cpu" 1 "$tput" "$p50" "$p99" "$errors"
}
if selected "two-instances-c64"; then
  second_port=$((PG_PORT + 2000))
  port_free "$second_port" || die "port $second_port (BENCH_PG_PORT + 2000), the second instance's, is taken"
  second_url="http://127.0.0.1:$second_port"
  log "starting a second instance on $second_url (same database)"
  "${svc_env[@]}" Database__MigrateOnStart=false dotnet "$dll" --urls "$second_url" >>"$results/service-2.log" 2>&1 &
  second_pid=$!
  for ((i = 0; i < 600; i++)); do curl -fsS "$second_url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$second_url/healthz" >/dev/null || die "the second instance did not come up within 60 s"
  run_wrk "$results/jit2.warmup" 5 16 1 bench/wrk/report.lua "$second_url/v1/requests" "$key" "$CUSTOMERS" 0 >/dev/null
fi
scenario "two-instances-c64" run_wrk_split 64 "$key" "$CUSTOMERS" 0
if [[ -n "$second_pid" ]]; then kill "$second_pid" 2>/dev/null || true; wait "$second_pid" 2>/dev/null || true; second_pid=""; fi

# Neighbours: a quiet merchant's paced single reports, alone and while another merchant (the bench's main one) floods
# the same instance with all it can send: FLOOD_SINGLES connections of single reports and FLOOD_BATCHES of batches of
# 1,000 (beyond its two batches at once and eight waiting, answered 429 and sent again at once). The row is the quiet merchant's; the flood's
# reports stored per second (counted in the database) and its refused calls are extra columns.
run_wrk_flooded() { # as run_wrk for the quiet merchant's load; $1 = output file, $2 = seconds, rest = run_wrk's from its 3rd
  local out="$1" seconds="$2" flood_singles flood_batches stored0 stored1 quiet_stored0 quiet_stored1 row refused
  shift 2
  stored0="$(stored_reports)"; quiet_stored0="$(quiet_reports)"
  : >"$out.flood-singles"; : >"$out.flood-batches"; flood_singles=""; flood_batches=""
  if (( FLOOD_SINGLES > 0 )); then
    wrk -t1 -c"$FLOOD_SINGLES" -d"$(( seconds + 2 ))s" --timeout 30s -s bench/wrk/report.lua "$url/v1/requests" \
      -- "$key" "$CUSTOMERS" 0 "${out##*/}-flood-$(date +%s%N)" >"$out.flood-singles" 2>&1 &
    flood_singles=$!
  fi
  if (( FLOOD_BATCHES > 0 )); then
    wrk -t1 -c"$FLOOD_BATCHES" -d"$(( seconds + 2 ))s" --timeout 30s -s bench/wrk/batch.lua "$url/v1/requests/batch" \
      -- "$key" "$CUSTOMERS" 1000 "${out##*/}-floodb-$(date +%s%N)" >"$out.flood-batches" 2>&1 &
    flood_batches=$!
  fi
  sleep 1   # the flood is under way before the quiet merchant's run starts, and lasts past its end
  row="$(run_wrk "$out" "$seconds" "$@")" || { kill $flood_singles $flood_batches 2>/dev/null; return 1; }
  [[ -z "$flood_singles" ]] || wait "$flood_singles" || die "wrk failed; see $out.flood-singles"
  [[ -z "$flood_batches" ]] || wait "$flood_batches" || die "wrk failed; see $out.flood-batches"
  stored1="$(stored_reports)"; quiet_stored1="$(quiet_reports)"
  refused="$(awk '/Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out.flood-singles" "$out.flood-batches")"
  row="$row $(awk -v a="$stored0" -v b="$stored1" -v qa="$quiet_stored0" -v qb="$quiet_stored1" -v s="$(( seconds + 2 ))" \
    'BEGIN { printf "%.0f", ((b - a) - (qb - qa)) / s }') $refused"
  echo "$row" | tee "$out.result"
}
quiet_reports() { psql_app -At -c "SELECT count(*) FROM requests WHERE merchant_id = '${quiet_merchant:-}'"; }
scenario "neighbour-alone" run_wrk "$QUIET_CONNECTIONS" 1 bench/wrk/quiet.lua /v1/requests "$quiet_key" "$QUIET_CUSTOMERS" "$QUIET_PACE_MS"
scenario "neighbour-flooded" run_wrk_flooded "$QUIET_CONNECTIONS" 1 bench/wrk/quiet.lua /v1/requests "$quiet_key" "$QUIET_CUSTOMERS" "$QUIET_PACE_MS"

# Gateway overhead: one chat completion sent to the stub provider directly and through /v1/forward, either billed to a
# customer (a hold before the call, a usage report after it) or BYOK (a token with provider_key only: nothing held,
# nobody charged, a gateway transaction recorded). At 1 connection nothing queues, so the difference is the gateway's
# own work per call; at GATEWAY_CONNECTIONS it includes waiting for the cores. bench/ttfb.mjs times streams.
stub_chat="$stub_url/v1/chat/completions"
forward="/v1/forward?u=$stub_chat"
if (( gateway_selected )); then
  # Tiered JIT again: the gateway's code path has not run yet (and at a few hundred calls a second it is still being
  # recompiled after 20 s, so the loaded runs go first and warm the code for the runs at 1 connection).
  run_wrk "$results/jit-gateway.warmup" 10 "$GATEWAY_CONNECTIONS" 1 bench/wrk/forward.lua "$forward" customer "$key" "$CUSTOMERS" >/dev/null
  run_wrk "$results/jit-gateway-byok.warmup" 5 "$GATEWAY_CONNECTIONS" 1 bench/wrk/forward.lua "$forward" byok "$key" "$CUSTOMERS" >/dev/null
  run_ttfb "$results/jit-gateway-stream.warmup" 5 "$GATEWAY_CONNECTIONS" "$url$forward" customer >/dev/null
fi
for c in "$GATEWAY_CONNECTIONS" 1; do
  scenario "gateway-direct-c$c" run_wrk "$c" 1 bench/wrk/forward.lua "$stub_chat" direct "$key" "$CUSTOMERS"
  scenario "gateway-customer-c$c" run_wrk_gateway "$c" 1 bench/wrk/forward.lua "$forward" customer "$key" "$CUSTOMERS"
  scenario "gateway-byok-c$c" run_wrk_gateway "$c" 1 bench/wrk/forward.lua "$forward" byok "$key" "$CUSTOMERS"
  if (( c > 1 )); then
    scenario "gateway-ttfb-direct-c$c" run_ttfb "$c" "$stub_chat" direct
    scenario "gateway-ttfb-customer-c$c" run_ttfb "$c" "$url$forward" customer
    scenario "gateway-ttfb-byok-c$c" run_ttfb "$c" "$url$forward" byok
  fi
done

# What one commit costs on this machine, the unit of the gateway's own time (a billed call commits twice before the
# client has its answer, its hold taking one more round trip; a BYOK call commits twice): pgbench, one client, one row
# updated per transaction, back to back and paced at a gateway call's rate at one connection (the client idle between).
if selected commit-c1 || selected commit-paced-c1; then
  psql_app -c "CREATE TABLE IF NOT EXISTS bench_commit (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0); INSERT INTO bench_commit VALUES (1) ON CONFLICT DO NOTHING" >/dev/null
  echo 'UPDATE bench_commit SET n = n + 1 WHERE id = 1;' >"$results/commit.sql"
fi
scenario "commit-c1" run_pgbench 1 1 "$results/commit.sql" "$merchant"
scenario "commit-paced-c1" run_pgbench 1 1 "$results/commit.sql" "$merchant" prepared 250

bench/pgbench/reports.sh 1 "$CUSTOMERS" >"$results/report.sql"
bench/pgbench/reports.sh 1 "$CUSTOMERS" --lookups >"$results/report-lookups.sql"
# The service posts through WRITERS transactions at once whatever its HTTP connections; the raw limit that its ratios
# divide by runs pgbench at that concurrency (64 clients are 64 concurrent posting transactions, a load the service
# never puts on the database).
WRITERS="$(bench/pgbench/reports.sh --writers)"
raw_clients=("$WRITERS"); for c in 16 64; do if (( c != WRITERS )); then raw_clients+=("$c"); fi; done
for c in "${raw_clients[@]}"; do scenario "pgbench-c$c" run_pgbench "$c" 1 "$results/report.sql" "$merchant"; done
scenario "pgbench-lookups-c64" run_pgbench 64 1 "$results/report-lookups.sql" "$merchant"
scenario "pgbench-unprepared-c64" run_pgbench 64 1 "$results/report.sql" "$merchant" extended
for k in 1 10 50; do
  bench/pgbench/reports.sh "$k" "$CUSTOMERS" --disjoint >"$results/group-$k.sql"
  for c in "${raw_clients[@]}"; do
    if (( k == 1 && c == WRITERS )); then continue; fi   # pgbench-c$WRITERS, on shared customers
    scenario "group-$k-c$c" run_pgbench "$c" "$k" "$results/group-$k.sql" "$gc_merchant"
  done
done
# The minimal report transaction (bench/pgbench/minimal.sh): the floor every service figure is divided by.
if selected minimal-1-c32 || selected minimal-50-c32; then psql_app -v customers="$GC_CUSTOMERS" -f bench/pgbench/minimal-schema.sql >/dev/null; fi
for k in 1 50; do
  bench/pgbench/minimal.sh "$k" >"$results/minimal-$k.sql"
  scenario "minimal-$k-c32" run_pgbench 32 "$k" "$results/minimal-$k.sql" "$gc_merchant"
done
# What prepared statements buy the service: the same run with Npgsql's automatic preparation turned off (the service
# turns it on unless the connection string says otherwise). Last, so a tight time budget drops it.
if selected single-1000-c64-unprepared; then
  stop_service
  start_service ConnectionStrings__Billing="$conn;Max Auto Prepare=0"
  run_wrk "$results/jit-unprepared.warmup" 5 16 1 bench/wrk/report.lua /v1/requests "$key" "$CUSTOMERS" 0 >/dev/null
fi
scenario "single-1000-c64-unprepared" run_wrk 64 1 bench/wrk/report.lua /v1/requests "$key" "$CUSTOMERS" 0

# ---------- export ----------
# One whole CSV export of a merchant's ledger (GET /v1/ledger/entries?format=csv) in a fresh service process, so its
# peak RSS (VmHWM) is an export's: one whole export first warms the code path (tiered JIT: a 1,000-entry warm-up
# left most of the JIT's work, ~5 s of CPU, inside the measured export), then curl streams everything into wc -l. Prints (and writes to $1.result): entries/s seconds first_byte_s peak_rss_mb start_rss_mb
# svc_ms pg_ms load1 csv_mb
run_export() { # $1 = output file, $2 = the export merchant's secret key
  local out="$1" k="$2" before after lines code first_byte total bytes start_kb peak_kb
  stop_service
  start_service
  curl -fsS --max-time 600 -o /dev/null -H "Authorization: Bearer $k" \
    "$url/v1/ledger/entries?format=csv" || die "the warm-up export failed"
  start_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$svc_pid/status")"
  before=($(snapshot))
  lines="$(curl -sS -N --max-time 600 -H "Authorization: Bearer $k" \
             -w '%{stderr}%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n' \
             "$url/v1/ledger/entries?format=csv" 2>"$out.curl" | wc -l)"
  after=($(snapshot))
  peak_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$svc_pid/status")"
  read -r code first_byte total bytes < <(tail -n1 "$out.curl")
  [[ "$code" == 200 ]] || die "the export answered ${code:-nothing}; see $out.curl"
  # One header line, then one line per entry (no field holds a line break).
  (( lines - 1 == EXPORT_ENTRIES )) || die "the export returned $(( lines - 1 )) entries, expected $EXPORT_ENTRIES"
  awk -v n="$EXPORT_ENTRIES" -v t="$total" -v fb="$first_byte" -v peak="$peak_kb" -v start="$start_kb" -v bytes="$bytes" \
      -v tick="$clk_tck" -v s0="${before[0]}" -v s1="${after[0]}" -v p0="${before[1]}" -v p1="${after[1]}" \
      -v load="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { ms = 1000 / tick; printf "%.0f %.2f %.2f %.0f %.0f %.0f %.0f %s %.0f\n", n / t, t, fb, peak / 1024, start / 1024,
             (s1 - s0) * ms, (p1 - p0) * ms, load, bytes / 1048576 }' | tee "$out.result"
}

# Seeds EXPORT_ENTRIES entries for a merchant of their own (bench/export-seed.sql, through every ledger trigger), has
# the sequencer number them (a ledger read runs it; the export would otherwise do it first), then BENCH_RUNS exports.
export_seed_s="-"
export_sequence_s="-"
export_scenario() {
  local name="export-1m" json m k t0 first last numbered run rows=()
  if ! selected "$name"; then SKIPPED[$name]="not selected"; return 0; fi
  # Here seeding and numbering took 40-100 s, and a run (restart, warm-up, export) about 15 s with a 1,000-entry warm-up; a whole warm-up export adds its own ~7 s.
  if (( $(elapsed) + 120 + RUNS * 30 > MAX_SECONDS )); then
    log "skipping $name: the run would pass BENCH_MAX_SECONDS=$MAX_SECONDS"
    SKIPPED[$name]="time budget"
    return 0
  fi
  json="$(create_merchant bench-export)"
  m="$(json_field merchant_id <<<"$json")"; k="$(json_field secret_key <<<"$json")"
  [[ -n "$m" && -n "$k" ]] || die "merchants create printed no merchant/key"
  log "$name: seeding $EXPORT_ENTRIES ledger entries for $m"
  t0="$(date +%s%N)"
  psql_app -v merchant="$m" -v customers="$EXPORT_CUSTOMERS" -f bench/seed.sql
  for ((first = 1; first <= EXPORT_TRANSACTIONS; first += EXPORT_CHUNK)); do
    last=$(( first + EXPORT_CHUNK - 1 < EXPORT_TRANSACTIONS ? first + EXPORT_CHUNK - 1 : EXPORT_TRANSACTIONS ))
    psql_app -v merchant="$m" -v customers="$EXPORT_CUSTOMERS" -v transactions="$EXPORT_TRANSACTIONS" \
      -v first="$first" -v last="$last" -f bench/export-seed.sql
  done
  psql_app -c "ANALYZE ledger_transactions, entries"
  export_seed_s="$(( ($(date +%s%N) - t0) / 1000000000 ))"
  t0="$(date +%s%N)"
  curl -fsS --max-time 600 -o /dev/null -H "Authorization: Bearer $k" "$url/v1/ledger/entries?limit=1" \
    || die "the ledger read that numbers the entries failed"
  psql_app -c "ANALYZE ledger_sequence, entry_unsequenced"
  export_sequence_s="$(( ($(date +%s%N) - t0) / 1000000000 ))"
  # The merchant id is ours (mer_ and a ULID): safe to splice into the statement.
  numbered="$(psql_app -At -c "SELECT coalesce(sum(cardinality(entry_ids)), 0) FROM ledger_sequence WHERE merchant_id = '$m'")"
  [[ "$numbered" == "$EXPORT_ENTRIES" ]] || die "$name: $numbered of $EXPORT_ENTRIES entries are numbered"
  # A ledger of that age has been vacuumed: without this, autovacuum of the just-seeded tables ran between the measured
  # exports (and can run during one, its CPU counted as PostgreSQL's), and the first export set the hint bits.
  psql_app -c "VACUUM (ANALYZE) ledger_transactions, entries, ledger_sequence"
  log "$name: seeded in ${export_seed_s}s, numbered in ${export_sequence_s}s; $RUNS exports"
  checkpoint
  # Not in a command substitution: run_export restarts the service, and svc_pid must stay this shell's. (Not i either:
  # start_service counts with it.)
  for ((run = 1; run <= RUNS; run++)); do
    run_export "$results/$name.run$run" "$k" >/dev/null
    rows+=("$(cat "$results/$name.run$run.result")")
  done
  record_medians "$name" "${rows[@]}"
}
export_scenario
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
requests_stored="$(psql_app -At -c "SELECT count(*) FROM requests")"

# ---------- docs/BENCHMARKS.md ----------
col() { # $1 = scenario, $2 = column (1 tput, 2 p50, 3 p99, 4 errors, 5 svc, 6 pg, 7 gen, 8 busy, 9 wall, 10 load)
  [[ -n "${R[$1]:-}" ]] && awk -v c="$2" '{ print $c }' <<<"${R[$1]}" || echo "-"
}
num() { [[ "$1" == "-" ]] && echo "-" || awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
ratio() { [[ "$1" == "-" || "$2" == "-" ]] && echo "-" || awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# CPU per unit of throughput in microseconds: $1 = scenario, $2 = column
per_unit() {
  [[ -n "${R[$1]:-}" ]] || { echo "-"; return; }
  awk -v c="$2" -v s="$RUN_SECONDS" '{ units = $1 * s; v = (c == 0 ? $8 - $5 - $6 - $7 : $c); if (v < 0) v = 0; printf "%.0f", (units > 0 ? v * 1000 / units : 0) }' <<<"${R[$1]}"
}
busy_pct() { [[ -n "${R[$1]:-}" ]] && awk '{ printf "%.0f", ($9 > 0 ? 100 * $8 / $9 : 0) }' <<<"${R[$1]}" || echo "-"; }
row_single() { # $1 = scenario, $2 = label, $3 = customers, $4 = replays, $5 = connections
  if [[ -n "${SKIPPED[$1]:-}" ]]; then echo "| $2 | $3 | $4 | $5 | skipped (${SKIPPED[$1]}) | | | | |"; return; fi
  echo "| $2 | $3 | $4 | $5 | $(num "$(col "$1" 1)") | $(col "$1" 2) | $(col "$1" 3) | $(col "$1" 4) | $(busy_pct "$1")% / $(col "$1" 10) |"
}
minus() { [[ "$1" == "-" || "$2" == "-" ]] && echo "-" || awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", a - b }'; }
row_gateway() { # $1 = scenario, $2 = label, $3 = connections, $4 = the direct scenario to subtract
  if [[ -n "${SKIPPED[$1]:-}" ]]; then echo "| $2 | $3 | skipped (${SKIPPED[$1]}) | | | | | | | | | | |"; return; fi
  local added50="" added99="" before="" after=""
  [[ "$1" == "$4" ]] || { added50="**$(minus "$(col "$1" 2)" "$(col "$4" 2)")**"; added99="$(minus "$(col "$1" 3)" "$(col "$4" 3)")"
                          before="$(col "$1" 11)"; after="$(col "$1" 12)"; }
  echo "| $2 | $3 | $(num "$(col "$1" 1)") | $(col "$1" 2) | $(col "$1" 3) | $added50 | $added99 | $before | $after | $(per_unit "$1" 5) | $(per_unit "$1" 6) | $(col "$1" 4) | $(busy_pct "$1")% / $(col "$1" 10) |"
}
row_floor() { # $1 = service scenario, $2 = the minimal transaction's scenario
  [[ -n "${R[$1]:-}" || -n "${R[$2]:-}" ]] || return 0
  echo "| $1 | $(num "$(col "$1" 1)") | $2 | $(num "$(col "$2" 1)") | **$(ratio "$(col "$1" 1)" "$(col "$2" 1)")** | $(per_unit "$1" 6) | $(per_unit "$2" 6) |"
}
row_stream() { # $1 = scenario, $2 = label, $3 = the direct scenario to subtract
  if [[ -n "${SKIPPED[$1]:-}" ]]; then echo "| $2 | skipped (${SKIPPED[$1]}) | | | | | | | |"; return; fi
  local added50="" added99=""
  [[ "$1" == "$3" ]] || { added50="**$(minus "$(col "$1" 2)" "$(col "$3" 2)")**"; added99="$(minus "$(col "$1" 3)" "$(col "$3" 3)")"; }
  echo "| $2 | $(num "$(col "$1" 1)") | $(col "$1" 2) | $(col "$1" 3) | $added50 | $added99 | $(col "$1" 11) | $(col "$1" 4) | $(busy_pct "$1")% / $(col "$1" 10) |"
}
if [[ -n "${BENCH_MEDIANS:-}" ]]; then
  for name in "${!R[@]}"; do printf '%s\t%s\n' "$name" "${R[$name]}"; done | sort >"$BENCH_MEDIANS"
fi
# The profile section (scripts/bench.sh profile) is kept as it is when the rest of the file is written again.
profile_section="$(sed -n '/^<!-- profile:begin/,/^<!-- profile:end -->/p' "$OUT" 2>/dev/null || true)"
gc="$GATEWAY_CONNECTIONS"
machine_cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
machine_mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
pg_version="$(psql_app -At -c 'SELECT version()')"
dotnet_version="$(dotnet --version) (SDK), $(dotnet --list-runtimes | awk '/Microsoft.AspNetCore.App/ { v = $2 } END { print "ASP.NET Core " v }')"
wrk_version="$( (wrk --version 2>&1 || true) | awk 'NR == 1 { print $2 }')"

{
  cat <<EOF
# Benchmarks

Generated by \`$command_line\` on $(date -u +'%Y-%m-%d %H:%M UTC') from $(source_revision Lava.Billing bench scripts ':!bench/notes.md').
Do not edit by hand: run the command again (it took $(( ($(elapsed) + 59) / 60 )) min). Notes at the end are kept in \`bench/notes.md\`.

## Machine

| what | value |
|---|---|
| CPU | $machine_cpu, $(nproc) cores |
| memory | $machine_mem |
| kernel | $(uname -sr) |
| PostgreSQL | ${pg_version%% on *} (own cluster, fsync on, synchronous_commit on, full_page_writes on, shared_buffers $PG_SHARED_BUFFERS) |
| disk flush | ${fsync_rate:-?} fdatasync/s (pg_test_fsync, one 8 kB write, on the file system of the cluster's WAL) |
| kernel writeback | dirty pages written back $writeback (\`/proc/sys/vm\`; \`BENCH_DIRTY_BACKGROUND_BYTES\`) |
| .NET | $dotnet_version, service built with \`dotnet build -c Release\` |
| load generators | wrk $wrk_version (2 threads, Lua scripts in \`bench/wrk/\`), pgbench (2 threads, scripts from \`bench/pgbench/reports.sh\`) |
| load average (1/5/15 min) | $load_start at the start, $load_end at the end |

The machine is shared: other processes (other engineers' builds and tests) compete for the same 2 cores during the
run. Each row therefore shows the machine's CPU use during the median run and its 1-minute load average; a busy
share well above what this benchmark's own processes use (see "Where time goes") means the numbers are low.

Method: each scenario has a ${WARMUP_SECONDS} s warm-up, then $RUNS runs of ${RUN_SECONDS} s; every column is the median of the runs. Latency is
per HTTP call (wrk) or per database transaction (pgbench), from the load generator. Fresh database per bench run;
$CUSTOMERS customers with 100 credits each and one graduated tokens meter (5 / 3 / 1 per 1M tokens). Each report:
500-3,500 input and 100-1,000 output tokens, one metadata pair. $requests_stored reports were stored by the end.

## Single reports: \`POST /v1/requests\`

| scenario | customers | replays | connections | reports/s | p50 ms | p99 ms | errors | machine busy / load |
|---|---|---|---|---|---|---|---|---|
$(row_single single-1000-c16 "distinct request_ids" 1,000 0% 16)
$(row_single single-1000-c64 "distinct request_ids" 1,000 0% 64)
$(row_single two-instances-c64 "two instances, 32 connections each" 1,000 0% 64)
$(row_single single-10-c16 "contention" 10 0% 16)
$(row_single single-10-c64 "contention" 10 0% 64)
$(row_single replay20-c16 "with replays" 1,000 20% 16)
$(row_single replay20-c64 "with replays" 1,000 20% 64)

Target: at least 5,000 reports/s at 64 connections with p99 at most 50 ms. Reached here: $(num "$(col single-1000-c64 1)") reports/s, p99 $(col single-1000-c64 3) ms.

Two instances of the service on the one database, the 64 connections split between them, give $(ratio "$(col two-instances-c64 1)" "$(col single-1000-c64 1)") times the
reports/s of one instance with all 64 (the \`two-instances-c64\` row against the first \`distinct request_ids\` row at 64): on one 2-core
machine both instances and PostgreSQL share the cores, and commits are bound by the one primary (docs/operations.md).

## Neighbours: one merchant's flood, another merchant's reports

A quiet merchant ($QUIET_CUSTOMERS customers of its own) sends single reports on $QUIET_CONNECTIONS connections, each waiting ${QUIET_PACE_MS} ms after an
answer before its next report: alone, then while the bench's main merchant floods the same instance with everything it
can send, $FLOOD_SINGLES connections of single reports and $FLOOD_BATCHES of batches of 1,000 at once (its batches beyond two at once
and eight waiting are answered 429 and sent again at once). Every figure but the last two columns is the quiet merchant's.
What the service promises is that the flood takes its own merchant's turns and queues (docs/operations.md, "One
merchant's share"), not the quiet one's: on 2 shared cores the quiet merchant still waits for CPU the flood is using.

| quiet merchant | reports/s | p50 ms | p99 ms | errors | the flood's reports/s | the flood's calls refused (429) | machine busy / load |
|---|---|---|---|---|---|---|---|
EOF
  for n in alone flooded; do
    if [[ -n "${SKIPPED[neighbour-$n]:-}" ]]; then echo "| $n | skipped (${SKIPPED[neighbour-$n]}) | | | | | | |"; continue; fi
    echo "| $n | $(num "$(col "neighbour-$n" 1)") | $(col "neighbour-$n" 2) | $(col "neighbour-$n" 3) | $(col "neighbour-$n" 4) | $( [[ $n == flooded ]] && col "neighbour-$n" 11) | $( [[ $n == flooded ]] && col "neighbour-$n" 12) | $(busy_pct "neighbour-$n")% / $(col "neighbour-$n" 10) |"
  done
  cat <<EOF

The quiet merchant's p99 while flooded is $(ratio "$(col neighbour-flooded 3)" "$(col neighbour-alone 3)") times its p99 alone, its reports/s $(ratio "$(col neighbour-flooded 1)" "$(col neighbour-alone 1)") times.

## Batch reports: \`POST /v1/requests/batch\`

$BATCH_CONNECTIONS concurrent calls, each item a distinct report for another customer.

| items per call | reports/s | calls/s | p50 ms per call | p99 ms per call | errors | machine busy / load |
|---|---|---|---|---|---|---|
EOF
  for n in 100 1000; do
    if [[ -n "${SKIPPED[batch-$n]:-}" ]]; then echo "| $n | skipped (${SKIPPED[batch-$n]}) | | | | | |"; continue; fi
    echo "| $n | $(num "$(col "batch-$n" 1)") | $(awk -v t="$(col "batch-$n" 1)" -v n="$n" 'BEGIN { printf "%.1f", t / n }') | $(col "batch-$n" 2) | $(col "batch-$n" 3) | $(col "batch-$n" 4) | $(busy_pct "batch-$n")% / $(col "batch-$n" 10) |"
  done
  cat <<EOF

Target: at least 20,000 reports/s, at most 80 µs of PostgreSQL CPU per report. Reached here: $(num "$(col batch-1000 1)") reports/s with 1,000 items per call, $(per_unit batch-1000 6) µs of PostgreSQL CPU per report.

## The raw database limit: pgbench running one report's SQL

\`bench/pgbench/reports.sh 1\`: per transaction the statements \`Requests/Posting/\` (\`LockedReads.cs\`, \`ReportWriter.cs\`) runs for one report of
a customer without a hold posted alone, in the same two round trips (pipelined: BEGIN, lock timeout, five plan
settings, usage-total lock, usage-total read, balance lock, hold lock, replay check, billing context, plan meters, key
re-check, meter version check; then the one INSERT ... CTE and COMMIT: 18 statements), random customers out of $CUSTOMERS, prepared statements (\`-M prepared\`, as the service prepares
what repeats). What it leaves out of the service's work: HTTP, JSON, pricing, and
the two reads the service made before the transaction until it kept them in memory (secret key, meter price; the
transaction re-checks both; measured separately below). The service coalesces
concurrent reports into shared transactions (group commit, on by default), which is how it can pass this limit.
Whatever its HTTP connections, the service runs at most $WRITERS posting transactions at once (its group-commit writers,
\`bench/pgbench/reports.sh --writers\`), so the raw limit its ratios divide by is pgbench with $WRITERS clients. More clients
are more concurrent posting transactions, a load the service never puts on the database: their rows show what that
costs PostgreSQL per transaction (contention for the same pages, locks and cores).

| pgbench clients | raw reports/s | p50 ms | p99 ms | PostgreSQL µs / transaction | errors |
|---|---|---|---|---|---|
$(for c in "${raw_clients[@]}"; do echo "| $c | $(num "$(col "pgbench-c$c" 1)") | $(col "pgbench-c$c" 2) | $(col "pgbench-c$c" 3) | $(per_unit "pgbench-c$c" 6) | $(col "pgbench-c$c" 4) |"; done)

The headline ratio: the service's single-report throughput divided by the raw limit at its own database concurrency.

| service scenario | service reports/s | raw reports/s ($WRITERS clients) | service / raw |
|---|---|---|---|
| single-1000-c16 | $(num "$(col single-1000-c16 1)") | $(num "$(col "pgbench-c$WRITERS" 1)") | **$(ratio "$(col single-1000-c16 1)" "$(col "pgbench-c$WRITERS" 1)")** |
| single-1000-c64 | $(num "$(col single-1000-c64 1)") | $(num "$(col "pgbench-c$WRITERS" 1)") | **$(ratio "$(col single-1000-c64 1)" "$(col "pgbench-c$WRITERS" 1)")** |

## Group commit: what the database allows

K reports per database transaction, so one commit (one WAL flush, one round-trip pair) serves K reports:
\`bench/pgbench/reports.sh K --disjoint\`, the same set-based statements as above with K reports in their arrays,
which is what the service's group-commit writer sends when K reports queued together (18 statements whatever K).
Every pgbench client posts for its own K customers, so concurrent transactions never wait on each other's rows: the
case of writers partitioned by customer. Latency is per transaction.

| reports per transaction | clients | transactions/s | reports/s | p50 ms | p99 ms | PostgreSQL µs / report | errors |
|---|---|---|---|---|---|---|---|
EOF
  for k in 1 10 50; do
    for c in "${raw_clients[@]}"; do
      n="group-$k-c$c"
      if (( k == 1 && c == WRITERS )); then continue; fi
      if [[ -n "${SKIPPED[$n]:-}" ]]; then echo "| $k | $c | skipped (${SKIPPED[$n]}) | | | | | |"; continue; fi
      echo "| $k | $c | $(num "$(awk -v t="$(col "$n" 1)" -v k="$k" 'BEGIN { print t / k }')") | **$(num "$(col "$n" 1)")** | $(col "$n" 2) | $(col "$n" 3) | $(per_unit "$n" 6) | $(col "$n" 4) |"
    done
  done
  cat <<EOF

## The floor: the minimal report transaction

\`bench/pgbench/minimal.sh K\` on tables of its own (\`bench/pgbench/minimal-schema.sql\`): per report only what a report
must write (a request row with its ~1 KB stored response, a ledger transaction, three entries, one balance row locked and
updated), K reports per transaction in one pipelined round trip, 32 pgbench clients each on its own customers, in the
same run as everything above. Each service figure beside it, and the ratio: how close the service comes to the floor.

| service scenario | service reports/s | floor | floor reports/s | service / floor | service PostgreSQL µs / report | floor PostgreSQL µs / report |
|---|---|---|---|---|---|---|
$(row_floor single-1000-c64 minimal-1-c32)
$(row_floor single-1000-c16 minimal-1-c32)
$(row_floor batch-100 minimal-50-c32)
$(row_floor batch-1000 minimal-50-c32)
$(row_floor group-50-c64 minimal-50-c32)
$(row_floor pgbench-c64 minimal-1-c32)

## Where time goes

CPU time per report, in microseconds, measured from /proc during the median run: the service process, every
PostgreSQL process of the bench cluster, the load generator, and everything else on the machine (other users).
Two cores give at most $(( 2 * 1000000 ))/s of CPU time: at N reports/s, a report can cost at most 2,000,000 / N µs in all.

| scenario | reports/s | service µs | PostgreSQL µs | load generator µs | other processes µs | machine busy |
|---|---|---|---|---|---|---|
EOF
  for s in single-1000-c16 single-1000-c64 single-1000-c64-unprepared single-10-c64 replay20-c64 batch-100 batch-1000 "pgbench-c$WRITERS" pgbench-c64 pgbench-lookups-c64 pgbench-unprepared-c64 "group-10-c$WRITERS" "group-50-c$WRITERS" group-10-c64 group-50-c64 minimal-1-c32 minimal-50-c32; do
    [[ -n "${R[$s]:-}" ]] || continue
    echo "| $s | $(num "$(col "$s" 1)") | $(per_unit "$s" 5) | $(per_unit "$s" 6) | $(per_unit "$s" 7) | $(per_unit "$s" 0) | $(busy_pct "$s")% |"
  done
  cat <<EOF

Reference points, same concurrency (64):

| what | per second | p50 ms | p99 ms |
|---|---|---|---|
| \`GET /healthz\` through Kestrel (the HTTP floor, no database) | $(num "$(col healthz-c64 1)") | $(col healthz-c64 2) | $(col healthz-c64 3) |
| pgbench, one report's transaction alone (2 round trips) | $(num "$(col pgbench-c64 1)") | $(col pgbench-c64 2) | $(col pgbench-c64 3) |
| pgbench, the same plus the two reads the service no longer makes per report (auth key, meter price: 4 round trips) | $(num "$(col pgbench-lookups-c64 1)") | $(col pgbench-lookups-c64 2) | $(col pgbench-lookups-c64 3) |
| pgbench, one report's transaction without prepared statements (\`-M extended\`) | $(num "$(col pgbench-unprepared-c64 1)") | $(col pgbench-unprepared-c64 2) | $(col pgbench-unprepared-c64 3) |
| the service, \`POST /v1/requests\` (statements prepared after they repeat, \`Max Auto Prepare=32\`) | $(num "$(col single-1000-c64 1)") | $(col single-1000-c64 2) | $(col single-1000-c64 3) |
| the service with \`Max Auto Prepare=0\` in its connection string (no prepared statements) | $(num "$(col single-1000-c64-unprepared 1)") | $(col single-1000-c64-unprepared 2) | $(col single-1000-c64-unprepared 3) |

${profile_section:-<!-- profile:begin -->
(No profile yet: run \`scripts/bench.sh profile\`.)
<!-- profile:end -->}

## Gateway overhead: \`/v1/forward\` to a stub provider

The stub (\`bench/stub-provider.mjs\`, node, its own process on 127.0.0.1) answers an OpenAI chat completion at once
with a constant body: JSON with a \`usage\` object, or, streamed, a first SSE chunk at once and the rest (content, the
usage chunk, \`data: [DONE]\`) 10 ms later. The same call goes to the stub directly and through \`/v1/forward?u=\`
(the stub allowed by \`Forward__AllowedUpstreams__0\`), authorised with a forward token built as the SDK's
\`generateForwardToken\` builds it. **customer**: \`customer_id\` (one of the $CUSTOMERS, another every call) and
\`meter_slug\`: the gateway holds the call's worst case before calling the provider and posts the usage report after
it, capturing the hold (two database transactions besides the reads). **BYOK**: \`provider_key\` only: nothing held,
nobody charged, one gateway ledger transaction recorded. Added = through the gateway minus directly, at the same
concurrency: at 1 connection nothing queues, so it is the gateway's own time per call; at $gc it includes waiting for
the 2 cores. CPU per call as in "Where time goes". **Before** and **after**: the gateway's own time per call (mean µs,
from the service's \`lava_gateway_added_duration_seconds\` over the runs): before the provider is called (the token,
the price, the hold and the call's record, committed) and after it answered (the call's usage, committed before the
client has the end of the answer). What is left of the added time is relaying: the provider call through the
service's HTTP client, and the client's request and response through the service.

Non-streaming, wrk (\`bench/wrk/forward.lua\`):

| path | connections | calls/s | p50 ms | p99 ms | added p50 ms | added p99 ms | before µs | after µs | service µs / call | PostgreSQL µs / call | errors | machine busy / load |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
$(row_gateway gateway-direct-c1 "stub directly" 1 gateway-direct-c1)
$(row_gateway gateway-customer-c1 "gateway, customer" 1 gateway-direct-c1)
$(row_gateway gateway-byok-c1 "gateway, BYOK" 1 gateway-direct-c1)
$(row_gateway "gateway-direct-c$gc" "stub directly" "$gc" "gateway-direct-c$gc")
$(row_gateway "gateway-customer-c$gc" "gateway, customer" "$gc" "gateway-direct-c$gc")
$(row_gateway "gateway-byok-c$gc" "gateway, BYOK" "$gc" "gateway-direct-c$gc")

Streaming (\`"stream": true\`), timed by \`bench/ttfb.mjs\` (node: $gc loops, each on a keep-alive connection and
sending its next stream when one ends): time to the first body byte, and to the end of the stream.

| path ($gc connections) | streams/s | first byte p50 ms | first byte p99 ms | added p50 ms | added p99 ms | whole stream p50 ms | errors | machine busy / load |
|---|---|---|---|---|---|---|---|---|
$(row_stream "gateway-ttfb-direct-c$gc" "stub directly" "gateway-ttfb-direct-c$gc")
$(row_stream "gateway-ttfb-customer-c$gc" "gateway, customer" "gateway-ttfb-direct-c$gc")
$(row_stream "gateway-ttfb-byok-c$gc" "gateway, BYOK" "gateway-ttfb-direct-c$gc")

One commit (pgbench, one client, one row updated per transaction, \`commit-c1\` and \`commit-paced-c1\`): p50
$(col commit-c1 2) ms back to back ($(num "$(col commit-c1 1)")/s), $(col commit-paced-c1 2) ms paced at 250 a second, the client
idle between them as the gateway's connection to PostgreSQL is while the provider answers.

Target: the gateway adds at most 2 ms at p50. Reached here: $(minus "$(col gateway-customer-c1 2)" "$(col gateway-direct-c1 2)") ms billed to a customer and $(minus "$(col gateway-byok-c1 2)" "$(col gateway-direct-c1 2)") ms BYOK at 1 connection; at $gc connections $(minus "$(col "gateway-customer-c$gc" 2)" "$(col "gateway-direct-c$gc" 2)") ms and $(minus "$(col "gateway-byok-c$gc" 2)" "$(col "gateway-direct-c$gc" 2)") ms, and a stream's first byte $(minus "$(col "gateway-ttfb-customer-c$gc" 2)" "$(col "gateway-ttfb-direct-c$gc" 2)") ms and $(minus "$(col "gateway-ttfb-byok-c$gc" 2)" "$(col "gateway-ttfb-direct-c$gc" 2)") ms. The gateway's own throughput at $gc connections: $(num "$(col "gateway-customer-c$gc" 1)") calls/s billed to customers, $(num "$(col "gateway-byok-c$gc" 1)") BYOK.

## Export: \`GET /v1/ledger/entries?format=csv\`

A merchant of its own with $EXPORT_CUSTOMERS customers and $(num "$EXPORT_ENTRIES") ledger entries: $(num "$EXPORT_TRANSACTIONS") usage postings of 4 entries
(customer credits, usage revenue, provider cost, provider payable) and the customers' credit grants, seeded with SQL
through every ledger trigger (\`bench/export-seed.sql\`, one transaction per $(num "$EXPORT_CHUNK") postings) in ${export_seed_s} s, and numbered
by the sequencer (its background loop while the chunks commit; what was left, by a ledger read taking ${export_sequence_s} s), both
before the runs. Each run restarts the service, exports everything once to warm its code path (tiered JIT), then streams the
whole export with curl into \`wc -l\`, checking that it holds every entry.
Peak RSS is the service's VmHWM (/proc) after the measured export, the column beside it the same after the warm-up export.

| entries | CSV MB | entries/s | seconds | first byte s | peak RSS MB | RSS before the export MB | service CPU s | PostgreSQL CPU s | load |
|---|---|---|---|---|---|---|---|---|---|
$(if [[ -n "${SKIPPED[export-1m]:-}" ]]; then echo "| $(num "$EXPORT_ENTRIES") | skipped (${SKIPPED[export-1m]}) | | | | | | | | |"; else
  echo "| $(num "$EXPORT_ENTRIES") | $(col export-1m 9) | **$(num "$(col export-1m 1)")** | $(col export-1m 2) | $(col export-1m 3) | **$(col export-1m 4)** | $(col export-1m 5) | $(awk -v v="$(col export-1m 6)" 'BEGIN { printf "%.1f", v / 1000 }') | $(awk -v v="$(col export-1m 7)" 'BEGIN { printf "%.1f", v / 1000 }') | $(col export-1m 8) |"; fi)

Target: at least 250,000 entries/s with peak RSS at most 200 MB. Reached here: $(num "$(col export-1m 1)") entries/s, peak RSS $(col export-1m 4) MB.

EOF
  cat bench/notes.md
} >"$OUT"
log "wrote $OUT in $(elapsed) s (raw output in $results)"
