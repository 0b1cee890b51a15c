# bench/profile.sh — sourced by `scripts/bench.sh profile` once its cluster (with pg_stat_statements and auto_explain
# preloaded), the service and the seed data are up. Measures where PostgreSQL's work goes per report, with measures
# that do not depend on how crowded the machine is: statements and their planning and execution (pg_stat_statements,
# track = all, so statements run inside triggers show as their own rows), WAL records and bytes (pg_stat_wal, and
# pg_waldump by record type), rows written per table and index growth (pg_stat_user_tables, relation sizes), and the
# plans of the posting statements of one 1,000-report batch with their buffers (auto_explain: EXPLAIN ANALYZE BUFFERS of
# the statements as the service sends them, nested statements and triggers included). PostgreSQL CPU per report (from
# /proc, every process of the cluster) is printed with the load average beside it: on a shared machine it is the noisy
# one. Writes $results/profile.md and puts it into $OUT between the profile markers.
#
# Phases, each on the same fresh database, each measured alone (the sequencer's numbering of the phase's entries is
# waited for and counted in it):
#   batch     PROFILE_BATCHES calls of POST /v1/requests/batch with 1,000 distinct reports each, one at a time;
#   single    POST /v1/requests from wrk at PROFILE_SINGLE_CONNECTIONS (16) for PROFILE_SINGLE_SECONDS (group commit on);
#   gateway   non-streaming chat completions through /v1/forward to the stub provider, billed to a customer (a hold
#             before the call, the usage posted after it), at 1 connection for PROFILE_GATEWAY_SECONDS (10); it ends
#             when every call is posted. Per call rather than per report.
#   minimal-K the minimal report transaction (bench/pgbench/minimal.sh K) run by pgbench, K = 1 and 50, 3,200 reports.
PROFILE_BATCHES="${BENCH_PROFILE_BATCHES:-10}"
PROFILE_GATEWAY_SECONDS="${BENCH_PROFILE_GATEWAY_SECONDS:-10}"
[[ "$PROFILE_GATEWAY_SECONDS" =~ ^[0-9]+$ ]] && (( PROFILE_GATEWAY_SECONDS >= 1 )) || die "BENCH_PROFILE_GATEWAY_SECONDS is a whole number of seconds, at least 1"
PROFILE_SINGLE_SECONDS="${BENCH_PROFILE_SINGLE_SECONDS:-5}"
PROFILE_SINGLE_CONNECTIONS="${BENCH_PROFILE_SINGLE_CONNECTIONS:-16}"
[[ "$PROFILE_BATCHES" =~ ^[0-9]+$ && "$PROFILE_SINGLE_SECONDS" =~ ^[0-9]+$ && "$PROFILE_SINGLE_CONNECTIONS" =~ ^[0-9]+$ ]] \
  && (( PROFILE_BATCHES >= 1 && PROFILE_BATCHES <= 100 && PROFILE_SINGLE_CONNECTIONS >= 1 && PROFILE_SINGLE_CONNECTIONS <= 64 )) \
  || die "BENCH_PROFILE_BATCHES is 1-100, BENCH_PROFILE_SINGLE_SECONDS a whole number, BENCH_PROFILE_SINGLE_CONNECTIONS 1-64"

psql_admin -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "CREATE SCHEMA IF NOT EXISTS bench_profile" >/dev/null
psql_app -v customers="$GC_CUSTOMERS" -f bench/pgbench/minimal-schema.sql >/dev/null

unsequenced() { psql_app -At -c "SELECT count(*) FROM entry_unsequenced"; }
wait_sequencer() { # the service's sequencer numbers committed entries every second
  local i
  for ((i = 0; i < 120; i++)); do (( $(unsequenced) == 0 )) && return 0; sleep 0.5; done
  die "the sequencer left $(unsequenced) entries unnumbered after 60 s"
}
# Every call the gateway admitted has a record; it counts as the gateway phase's unit.
forward_calls() { psql_app -At -c "SELECT count(*) FROM forward_calls"; }
# Rows written to the minimal schema count as reports of the minimal phases.
minimal_reports() { psql_app -At -c "SELECT count(*) FROM bench_minimal.requests"; }

# The measured state before a phase, kept in the database so the deltas are one query.
snapshot_stats() { # $1 = suffix (before, after)
  psql_admin >/dev/null <<SQL
DROP TABLE IF EXISTS bench_profile.tables_$1, bench_profile.indexes_$1;
CREATE TABLE bench_profile.tables_$1 AS
SELECT s.schemaname, s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
       pg_relation_size(s.relid) AS heap_bytes, pg_relation_size(c.reltoastrelid) AS toast_bytes
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname IN ('public', 'bench_minimal');
CREATE TABLE bench_profile.indexes_$1 AS
SELECT n.nspname AS schemaname, t.relname, i.relname AS indexname, x.indpred IS NOT NULL AS partial,
       pg_relation_size(i.oid) AS bytes
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname IN ('public', 'bench_minimal');
SQL
}

# profile_phase NAME REPORT-COUNTER COMMAND...: measures COMMAND; prints one summary line to $results/profile.NAME.*
profile_phase() {
  local name="$1" counter="$2" lsn0 lsn1 n0 n1 t0 t1 w0 w1 s0 s1 reports out
  out="$results/profile.$name"
  shift 2
  log "profile: $name"
  wait_sequencer
  psql_admin -c "VACUUM (ANALYZE)" >/dev/null   # what autovacuum would do eventually, done before the clock starts
  checkpoint
  snapshot_stats before
  psql_admin -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
  lsn0="$(psql_admin -At -c "SELECT pg_current_wal_insert_lsn()")"
  n0="$("$counter")"; t0="$(pg_ticks)"; w0="$(date +%s%N)"; s0="$(proc_ticks "$svc_pid")"
  "$@"
  wait_sequencer
  t1="$(pg_ticks)"; w1="$(date +%s%N)"; n1="$("$counter")"; s1="$(proc_ticks "$svc_pid")"
  lsn1="$(psql_admin -At -c "SELECT pg_current_wal_insert_lsn()")"
  reports=$(( n1 - n0 ))
  (( reports > 0 )) || die "profile $name stored no reports"
  # Table statistics reach shared memory when a backend is idle for 10 s at most (pgstat's idle interval).
  sleep 11
  snapshot_stats after
  psql_admin -At -F $'\t' -c "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal" >"$out.wal"
  "$pg_bin/pg_waldump" --stats=record -p "$datadir/pg_wal" -s "$lsn0" -e "$lsn1" >"$out.waldump" 2>"$out.waldump.err" || true
  psql_admin -At -F $'\t' >"$out.statements" <<SQL
SELECT CASE WHEN toplevel THEN 'top' ELSE 'nested' END, calls, total_plan_time, total_exec_time, rows,
       shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, wal_records, wal_bytes,
       left(regexp_replace(regexp_replace(query, '\s+', ' ', 'g'), '[|]', '/', 'g'), 110), plans
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'lava')
   AND query !~* '^(BEGIN|COMMIT|ROLLBACK|SET LOCAL|SELECT pg_stat|SELECT count)'
 ORDER BY total_plan_time + total_exec_time DESC
SQL
  psql_admin -At -F $'\t' >"$out.tables" <<SQL
SELECT a.schemaname || '.' || a.relname, a.n_tup_ins - b.n_tup_ins, a.n_tup_upd - b.n_tup_upd,
       a.n_tup_hot_upd - b.n_tup_hot_upd, a.n_tup_del - b.n_tup_del,
       (SELECT count(*) FROM bench_profile.indexes_after i WHERE i.schemaname = a.schemaname AND i.relname = a.relname),
       (SELECT count(*) FILTER (WHERE i.partial) FROM bench_profile.indexes_after i WHERE i.schemaname = a.schemaname AND i.relname = a.relname),
       a.heap_bytes + coalesce(a.toast_bytes, 0) - b.heap_bytes - coalesce(b.toast_bytes, 0),
       (SELECT coalesce(sum(ia.bytes - ib.bytes), 0) FROM bench_profile.indexes_after ia
          JOIN bench_profile.indexes_before ib USING (schemaname, relname, indexname)
         WHERE ia.schemaname = a.schemaname AND ia.relname = a.relname)
  FROM bench_profile.tables_after a JOIN bench_profile.tables_before b USING (schemaname, relname)
 WHERE a.n_tup_ins + a.n_tup_upd + a.n_tup_del > b.n_tup_ins + b.n_tup_upd + b.n_tup_del
 ORDER BY 2 DESC, 1
SQL
  psql_admin -At -F $'\t' >"$out.indexes" <<SQL
SELECT ia.schemaname || '.' || ia.relname, ia.indexname, ia.partial, ia.bytes - ib.bytes
  FROM bench_profile.indexes_after ia JOIN bench_profile.indexes_before ib USING (schemaname, relname, indexname)
 WHERE ia.bytes <> ib.bytes
 ORDER BY 4 DESC
SQL
  awk -v n="$reports" -v tick="$clk_tck" -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
      -v stm="$(awk -F'\t' '$1 == "top" { c += $2 } END { print c + 0 }' "$out.statements")" \
      -v wal="$(cat "$out.wal")" \
    'BEGIN { split(wal, w, "\t"); printf "%d\t%.1f\t%.2f\t%.0f\t%.3f\t%.0f\t%.1f\t%s\n", n, n / ((w1 - w0) / 1e9), w[1] / n, w[3] / n, w[2] / n,
             (t1 - t0) * 1e6 / tick / n, stm * 1000 / n, load }' >"$out.summary"
  # The service's CPU per report (noisy as PostgreSQL's; for the minimal phases it is the idle service's).
  awk -v n="$reports" -v tick="$clk_tck" -v s0="$s0" -v s1="$s1" 'BEGIN { printf "%.0f\n", (s1 - s0) * 1e6 / tick / n }' >"$out.service"
  log "profile $name: $(cat "$out.summary"), service $(cat "$out.service") µs/report"
}

batch_body() { # $1 = tag, $2 = items: a batch of distinct reports over the customers, as bench/wrk/batch.lua builds them
  awk -v tag="$1" -v items="$2" -v customers="$CUSTOMERS" 'BEGIN {
    printf "{\"requests\":["
    for (i = 0; i < items; i++) {
      printf "%s{\"request_id\":\"%s-%d\",\"customer_id\":\"cus_bench_%04d\",\"meter_slug\":\"tokens\",\"input_tokens\":%d,\"output_tokens\":%d,\"metadata\":{\"bench\":\"%s\"}}",
        (i ? "," : ""), tag, i, (i * 7919) % customers, 500 + (i * 31) % 3000, 100 + (i * 17) % 900, tag
    }
    printf "]}" }'
}
post_batch() { # $1 = tag: one call of 1,000 reports, which must all be stored
  batch_body "$1" 1000 >"$results/profile.body.json"
  local code
  code="$(curl -sS -o "$results/profile.batch.out" -w '%{http_code}' --max-time 120 -X POST "$url/v1/requests/batch" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' --data-binary @"$results/profile.body.json")"
  [[ "$code" == 2* ]] || die "a profile batch answered $code; see $results/profile.batch.out"
}
post_batches() { local i; for ((i = 1; i <= PROFILE_BATCHES; i++)); do post_batch "profile-$i-$(date +%s%N)"; done; }
post_singles() {
  wrk -t2 -c"$PROFILE_SINGLE_CONNECTIONS" -d"${PROFILE_SINGLE_SECONDS}s" --timeout 30s -s bench/wrk/report.lua "$url/v1/requests" -- "$key" "$CUSTOMERS" 0 \
    "profile-single-$(date +%s%N)" >"$results/profile.single.wrk" 2>&1 || die "wrk failed; see $results/profile.single.wrk"
}
post_gateway_for() { # $1 = seconds, $2 = output: billed calls at 1 connection, then every one of them posted
  wrk -t1 -c1 -d"${1}s" --timeout 30s -s bench/wrk/forward.lua "$url/v1/forward?u=$stub_url/v1/chat/completions" -- \
    customer "$key" "$CUSTOMERS" "profile-gateway" >"$2" 2>&1 || die "wrk failed; see $2"
  ! grep -q "Non-2xx" "$2" || die "gateway calls failed; see $2"
  local i
  for ((i = 0; i < 120; i++)); do
    (( $(psql_app -At -c "SELECT count(*) FROM forward_calls WHERE state IN ('pending', 'served')") == 0 )) && return 0
    sleep 0.5
  done
  die "gateway calls were still unposted 60 s after the last one"
}
post_gateway() { post_gateway_for "$PROFILE_GATEWAY_SECONDS" "$results/profile.gateway.wrk"; }
post_minimal() { # $1 = reports per transaction
  local k="$1"
  bench/pgbench/minimal.sh "$k" >"$results/minimal-$k.sql"
  PGPASSWORD=lava_pw "$pg_bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U lava -n -M prepared -c 16 -j 2 -t $(( 3200 / 16 / k )) \
    -f "$results/minimal-$k.sql" -D "resp=$stored_response" lava >"$results/profile.minimal-$k.out" 2>&1 \
    || die "pgbench failed; see $results/profile.minimal-$k.out"
}

# Warm: the service's code paths (tiered JIT) and every statement prepared, then the phases.
post_batch "profile-warm-$(date +%s%N)"
profile_phase batch stored_reports post_batches
profile_phase single stored_reports post_singles
post_gateway_for 5 "$results/profile.gateway-warm.wrk"   # the gateway's code paths and statements, as for the batch
profile_phase gateway forward_calls post_gateway
profile_phase minimal-1 minimal_reports post_minimal 1
profile_phase minimal-50 minimal_reports post_minimal 50

# The plans of one more batch of 1,000: EXPLAIN ANALYZE with buffers of every statement over 10 ms, nested ones and
# triggers included, from the server log.
log "profile: plans of one batch (auto_explain)"
log_from=$(( $(wc -l <"$datadir/server.log") + 1 ))
psql_admin >/dev/null <<'SQL'
ALTER SYSTEM SET auto_explain.log_min_duration = '10ms';
ALTER SYSTEM SET auto_explain.log_analyze = on;
ALTER SYSTEM SET auto_explain.log_buffers = on;
ALTER SYSTEM SET auto_explain.log_triggers = on;
ALTER SYSTEM SET auto_explain.log_nested_statements = on;
SELECT pg_reload_conf();
SQL
sleep 1
post_batch "profile-explain-$(date +%s%N)"
wait_sequencer
psql_admin -c "ALTER SYSTEM RESET auto_explain.log_min_duration" -c "SELECT pg_reload_conf()" >/dev/null
tail -n +"$log_from" "$datadir/server.log" | sed -n '/duration: .* plan:/,$p' >"$results/profile.plans.txt"

# ---------- the report ----------
per() { awk -v v="$1" -v n="$2" -v d="${3:-1}" 'BEGIN { printf "%." d "f", v / n }'; }
summary_row() { # $1 = phase, $2 = label
  local s; read -r -a s <"$results/profile.$1.summary"
  echo "| $2 | ${s[0]} | ${s[1]} | **$(awk -v v="${s[3]}" 'BEGIN { printf "%\047d", v }')** | ${s[2]} | ${s[4]} | ${s[6]} | ${s[5]} | ${s[7]} ${s[8]} ${s[9]} |"
}
statement_rows() { # $1 = phase, $2 = its reports (or calls), $3 = rows: the phase's costliest statements, per unit
  head -n "$3" "$results/profile.$1.statements" | awk -F'\t' -v n="$2" '{
    printf "| `%s` | %s | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f | %.0f |\n", $12, $1, $2 * 1000 / n, $3 * 1000 / n, $4 * 1000 / n, $5 / n, $6 / n, $8 / n, $11 / n }'
}
batch_reports="$(cut -f1 "$results/profile.batch.summary")"
gateway_calls="$(cut -f1 "$results/profile.gateway.summary")"
{
  cat <<EOF
<!-- profile:begin (generated by \`scripts/bench.sh profile\`; the rest of this file by \`scripts/bench.sh\`) -->
## Where PostgreSQL's work goes per report

Generated by \`scripts/bench.sh profile\` on $(date -u +'%Y-%m-%d %H:%M UTC') from $(source_revision Lava.Billing bench scripts migrations ':!bench/notes.md') in $(( ($(elapsed) + 59) / 60 )) min,
on a fresh cluster (fsync on, \`pg_stat_statements\` with \`track = all\` and \`track_planning = on\`, \`auto_explain\`
loaded). Each phase starts after \`VACUUM (ANALYZE)\` and a checkpoint, and ends when the sequencer has numbered its
entries, so the sequencer's work is in it. Everything per report except the CPU column counts work, not time, and is
the same on a busy or an idle machine; the CPU column (every process of the cluster, from /proc) is as noisy as the
load beside it. WAL includes full-page images, written once per page touched after the checkpoint.

| phase | reports | reports/s | WAL bytes / report | WAL records / report | full-page images / report | statements / 1,000 reports | PostgreSQL CPU µs / report | load 1/5/15 |
|---|---|---|---|---|---|---|---|---|
$(summary_row batch "service, batches of 1,000 ($PROFILE_BATCHES calls, one at a time)")
$(summary_row single "service, single reports, $PROFILE_SINGLE_CONNECTIONS connections (${PROFILE_SINGLE_SECONDS} s)")
$(summary_row gateway "service, billed gateway calls, 1 connection (${PROFILE_GATEWAY_SECONDS} s; per call)")
$(summary_row minimal-1 "pgbench, minimal report transaction, 1 per transaction")
$(summary_row minimal-50 "pgbench, minimal report transaction, 50 per transaction")

The minimal report transaction (\`bench/pgbench/minimal.sh\`, tables of its own from \`bench/pgbench/minimal-schema.sql\`)
writes what a report must: a request row with its stored response (~1 KB), a ledger transaction, three entries, and one
locked balance row updated; no trigger, foreign key, secondary index or sequencer.

### Batches of 1,000: statements

Every statement PostgreSQL ran during the batch phase (the service's and the sequencer's), by planning + execution time;
"nested" rows ran inside a trigger or function, and their time is also inside the top-level statement that fired them.
Per report, over $batch_reports reports.

| statement | level | calls / 1,000 reports | plan µs | exec µs | rows | shared blocks hit | dirtied | WAL bytes |
|---|---|---|---|---|---|---|---|---|
EOF
  statement_rows batch "$batch_reports" 25
  cat <<EOF

### Billed gateway calls: statements

The same for the gateway phase, per call over $gateway_calls calls: each call's admission (its hold and record, one
transaction) and served update, and after the response the posting of the calls' usage (gathered: several calls per
posting transaction), the close of the posted calls, and the sequencer's numbering.

| statement | level | calls / 1,000 calls | plan µs | exec µs | rows | shared blocks hit | dirtied | WAL bytes |
|---|---|---|---|---|---|---|---|---|
EOF
  statement_rows gateway "$gateway_calls" 20
  cat <<EOF

### Batches of 1,000: rows and index entries written per report

Index entries: every row inserted, and every row updated other than HOT, adds one entry to each index of its table (to
a partial index only when the row matches its predicate: counted as an upper bound, marked ≤). Bytes are the growth of
the table (with its TOAST) and of its indexes.

| table | inserted | updated (HOT) | deleted | indexes | index entries | table bytes | index bytes |
|---|---|---|---|---|---|---|---|
EOF
  awk -F'\t' -v n="$batch_reports" '$1 !~ /^bench_minimal/ {
    entries = ($2 + $3 - $4) * $6 / n
    printf "| %s | %.2f | %.2f (%.2f) | %.2f | %d%s | %s%.2f | %.0f | %.0f |\n", $1, $2 / n, $3 / n, $4 / n, $5 / n, $6,
      ($7 > 0 ? " (" $7 " partial)" : ""), ($7 > 0 ? "≤ " : ""), entries, $8 / n, $9 / n }' "$results/profile.batch.tables"
  cat <<EOF

Per index (bytes of growth per report, over the same phase):

| table | index | bytes / report |
|---|---|---|
EOF
  awk -F'\t' -v n="$batch_reports" '$1 !~ /^bench_minimal/ { printf "| %s | %s%s | %.1f |\n", $1, $2, ($3 == "t" ? " (partial)" : ""), $4 / n }' "$results/profile.batch.indexes"
  cat <<EOF

### Batches of 1,000: WAL by record type

\`pg_waldump --stats=record\` over the phase's WAL, per report (the ten largest; FPI = full-page images).

| record type | records | record bytes | FPI bytes | combined bytes |
|---|---|---|---|---|
EOF
  awk -v n="$batch_reports" '{ line = $0; gsub(/\( *[0-9.]+\)/, "", line); k = split(line, f, " ") }
                             k == 5 && f[1] ~ /\// { printf "%s\t%.2f\t%.0f\t%.0f\t%.0f\n", f[1], f[2] / n, f[3] / n, f[4] / n, f[5] / n }' \
      "$results/profile.batch.waldump" | sort -t$'\t' -k5 -g -r | head -n 10 | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
  cat <<EOF

### One batch of 1,000: plans

\`auto_explain\` (\`log_analyze\`, \`log_buffers\`, \`log_triggers\`, \`log_nested_statements\`) of one more call of
1,000 reports: the statements over 10 ms, with their actual rows, time and buffers. The full text is in the run's
\`bench/results/<time>/profile.plans.txt\`; here each statement's first lines and its trigger times.

\`\`\`
EOF
  # One block per statement text (the first time it was logged): its duration, first plan lines and trigger times.
  awk '/duration: .* plan:/ { pending = $0; sub(/^.*duration:/, "duration:", pending); show = 0; next }
       /^[[:space:]]*Query Text:/ { key = substr($0, 1, 60); show = !(key in seen); seen[key] = 1; lines = 0
                                    if (show) { if (blocks++) print ""; print pending; line = $0; sub(/^[[:space:]]*/, "", line); print substr(line, 1, 140) }
                                    next }
       !show { next }
       /^[[:space:]]*(Trigger|Planning|Execution)/ { sub(/^[[:space:]]*/, "  "); print; next }
       /^[[:space:]]*->|^[[:space:]]*(Insert|Update|Delete|Nested|Index|Seq|Hash|Sort|Limit|Aggregate|Result|CTE|Subquery|Function|LockRows|WindowAgg|Unique)/ {
         if (lines++ < 12) { line = $0; sub(/^[[:space:]]{0,8}/, "", line); print "  " substr(line, 1, 150) } }' "$results/profile.plans.txt"
  echo '```'
  echo "<!-- profile:end -->"
} >"$results/profile.md"

# Into $OUT between the markers (or at the end of it, the first time); the rest of the file is left as it is.
if [[ -f "$OUT" ]] && grep -q '^<!-- profile:begin' "$OUT"; then
  awk -v f="$results/profile.md" '/^<!-- profile:begin/ { while ((getline l < f) > 0) print l; skip = 1; next }
                                   /^<!-- profile:end -->/ { skip = 0; next } !skip' "$OUT" >"$OUT.new"
  mv "$OUT.new" "$OUT"
else
  { [[ -f "$OUT" ]] && cat "$OUT" && echo; cat "$results/profile.md"; } >"$OUT.new"
  mv "$OUT.new" "$OUT"
fi
log "profile written to $results/profile.md and into $OUT"
