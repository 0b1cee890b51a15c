#!/usr/bin/env bash
# Prints a pgbench script that posts K usage reports (default 1) in one database transaction with the SQL the service
# runs for them (Requests/Posting/LockedReads.cs and ReportWriter.cs: set-based, so the statement count does not grow with K), in the same
# two round trips. Pipeline 1: BEGIN, one statement setting the lock timeout and the plan settings (index lookups only, custom plans), lock
# the usage totals, read them, lock the customers' balances, lock holds (none here), replay check, billing contexts,
# plan meters, the reporting key's re-check, the meter's current version (the service prices with a cached copy and
# checks it here). Pipeline 2: the one INSERT ... CTE (requests, ledger transactions, entries, usage totals, hold
# captures), COMMIT. K = 1 is one report alone; K > 1 is what the
# service's group commit writer sends when K reports queued together (customers in ascending order, as it locks them).
# --lookups adds the two reads the service made before the transaction until it kept their results in memory, each its
# own round trip: the secret-key lookup (auth) and the meters' live prices.
# --disjoint gives every pgbench client its own K customers (client c posts for customers c*K .. c*K+K-1), so no two
# concurrent transactions touch the same customer: the case of writers partitioned by customer. Needs clients*K
# customers seeded.
#
# Pipeline 1 is the service's own text: the plan settings and the locked reads are read out of LockedReads.cs (its
# SQL constants, with the usage-period fragment they interpolate), and only their $n parameters are replaced, by
# arrays built in SQL; a read that is renamed, gains a parameter or interpolates something new stops this script
# rather than letting it drift. So the usage period is decided as the service decides it, in SQL from the report's
# time (now(), as the service stamps a report that names none): the customer's active subscription cycle, else the
# UTC month. The write step takes the period as a value, as the service's does (it binds what the read returned);
# pgbench cannot carry a result between pipelined statements, so it binds the UTC month of now() — the period of a
# seeded bench customer, who has no subscription — computed in the same transaction, so it always matches the lock.
#
# Differences from the service's statements, all forced by pgbench: its \set makes numbers only and a statement takes
# at most 255 parameters, so the arrays the service binds as parameters are built in SQL from one random number per
# transaction (:rb) with generate_series: request_id = rb + i, customer 'cus_bench_' || lpad(n, 4, '0'), input
# tokens 600-3,999 from rb + i; the fingerprint is sha256() of the request id, and the amounts come from the token
# count (5 per 1M: 3/5 from credits, 2/5 to the receivable) rather than from the pricing engine. A ':' that starts a
# word is a pgbench variable even inside quotes, hence ':' || 'receivable'.
# Variables expected via pgbench -D: m (merchant id), resp (a real response JSON), lineage (a lineage JSON), meta
# (metadata JSON), keyid (the merchant's secret key id), keyhash (hex SHA-256 of the secret key, for --lookups).
#
# reports.sh --writers prints how many posting transactions the service runs at once (GroupCommitOptions.Writers, read
# out of GroupCommit.cs): the clients to give pgbench for the raw limit at the service's own database concurrency. The
# service takes 64 HTTP connections' reports into that many writers; 64 pgbench clients are 64 concurrent posting
# transactions, which here cost 2-4 times the PostgreSQL CPU per transaction of 4 (bench/notes.md, "pgbench running
# the service's SQL").
# Usage: reports.sh [K] [CUSTOMERS] [--lookups | --disjoint] | reports.sh --writers
set -euo pipefail
if [[ "${1:-}" == --writers ]]; then
  GROUP_COMMIT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Lava.Billing/Requests/Posting/GroupCommit.cs"
  writers="$(sed -nE 's/^ *public int Writers \{ get; init; \} = ([0-9]+);$/\1/p' "$GROUP_COMMIT" 2>/dev/null || true)"
  [[ "$writers" =~ ^[0-9]+$ ]] || { echo "reports.sh: no default Writers in $GROUP_COMMIT: update bench/pgbench/reports.sh with it" >&2; exit 1; }
  echo "$writers"
  exit 0
fi
K="${1:-1}"; CUSTOMERS="${2:-1000}"; MODE="${3:-}"
[[ "$K" =~ ^[0-9]+$ && "$K" -ge 1 && "$K" -le 1000 && "$CUSTOMERS" =~ ^[0-9]+$ && "$MODE" =~ ^(|--lookups|--disjoint)$ ]] \
  || { echo "usage: reports.sh [K] [CUSTOMERS] [--lookups | --disjoint]" >&2; exit 2; }
(( CUSTOMERS % K == 0 )) || { echo "CUSTOMERS must be a multiple of K" >&2; exit 2; }
STRIDE=$((CUSTOMERS / K))

# Per report i = 0..K-1 (the column g of generate_series): its customer number, request id and tokens.
if [[ "$MODE" == --disjoint ]]; then CUSTOMER_NO="(:client_id * $K + g)"
else CUSTOMER_NO="(g * $STRIDE + (hashint8(:rb::bigint + g)::bigint & 2147483647) % $STRIDE)"; fi
CUSTOMER="('cus_bench_' || lpad($CUSTOMER_NO::text, 4, '0'))"
REQUEST="(:rb::bigint + g)::text"
TXN="('txn_pg_' || (:rb::bigint + g)::text)"
TOKENS="(600 + (:rb::bigint + g) % 3400 + 200)"
# per EXPR [TYPE]: the array of EXPR over the K reports, in report order
per() { echo "ARRAY(SELECT ($1)${2:+::$2} FROM generate_series(0, $((K - 1))) AS g ORDER BY g)"; }
# per3 EXPR: the array over the K reports' three entries (credits_cycle, receivable, usage_revenue), EXPR sees v.account, v.share
per3() {
  echo "ARRAY(SELECT ($1) FROM generate_series(0, $((K - 1))) AS g CROSS JOIN (VALUES (1, 'credits_cycle', 3), (2, 'receivable', 2), (3, 'usage_revenue', -5)) AS v(n, account, share) ORDER BY g, v.n)"
}
# fill VALUE [TIMES]: an array of TIMES (default K) copies of VALUE
fill() { echo "array_fill($1, ARRAY[${2:-$K}])"; }
ACCOUNT="CASE v.account WHEN 'usage_revenue' THEN 'usage_revenue' ELSE $CUSTOMER || ':' || v.account END"
# The period the service's usage read returns for a seeded customer (no subscription): see the header.
PERIOD="date_trunc('month', now(), 'UTC')"

LOCKED_READS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/Lava.Billing/Requests/Posting/LockedReads.cs"
[[ -f "$LOCKED_READS" ]] || { echo "reports.sh: $LOCKED_READS not found" >&2; exit 1; }
die() { echo "reports.sh: $* (in $LOCKED_READS): update bench/pgbench/reports.sh with it" >&2; exit 1; }
# replace TEXT FROM TO: every FROM in TEXT replaced by TO, literally (no pattern, no '&' expansion)
replace() {
  local rest="$1" out=""
  while [[ "$rest" == *"$2"* ]]; do out+="${rest%%"$2"*}$3"; rest="${rest#*"$2"}"; done
  printf '%s' "$out$rest"
}
# service_sql NAME: the raw string constant NAME of LockedReads.cs, unindented, with the fragments it interpolates
# from the same file (or StoredReport.cs beside it) expanded (LedgerKinds.AutoTopUp is the one constant it takes from elsewhere).
service_sql() {
  local text file="${2:-$LOCKED_READS}"
  text="$(awk -v name="$1" '
    $0 ~ "const string " name " = \\$?\"\"\"$" { inside = 1; next }
    inside && /^ *"""; *$/ { exit }
    inside { sub(/^        /, ""); print }' "$file")"
  [[ -n "$text" ]] || die "no SQL constant $1"
  while [[ "$text" =~ \{([A-Za-z.]+)\} ]]; do
    local inner="${BASH_REMATCH[1]}" value
    case "$inner" in
      LedgerKinds.AutoTopUp) value=auto_top_up ;;
      StoredReport.*) value="$(service_sql "${inner#*.}" "$(dirname "$LOCKED_READS")/StoredReport.cs")" ;;
      *.*) die "$1 interpolates $inner" ;;
      *) value="$(service_sql "$inner")" ;;
    esac
    text="$(replace "$text" "{$inner}" "$value")"
  done
  printf '%s' "$text"
}
# bind NAME TO1 TO2 ...: the constant NAME with $1, $2, ... replaced by TO1, TO2, ... (each parameter's cast kept)
bind() {
  local name="$1" sql n=1
  sql="$(service_sql "$name")"; shift
  for to in "$@"; do
    [[ "$sql" =~ \$$n(::[a-z]+\[\]) ]] || die "$name takes no \$$n"
    sql="$(replace "$sql" "\$$n${BASH_REMATCH[1]}" "$to")"
    n=$((n + 1))
  done
  [[ "$sql" != *"\$$n"* ]] || die "$name takes more than $((n - 1)) parameters"
  printf '%s;\n' "$sql"
}
# The service sends its lock timeout and plan settings as one statement (LockedReads.Settings); so does this script.
PLAN_SETTINGS="$(sed -n '/PlanSettings =/,/];/p' "$LOCKED_READS" | grep -oE '\("[a-z_]+", "[a-z0-9_]+"\)' \
  | sed -E "s/\(\"([a-z_]+)\", \"([a-z0-9_]+)\"\)/set_config('\1', '\2', true)/" | paste -sd';' - | sed 's/;/, /g')"
[[ -n "$PLAN_SETTINGS" ]] || die "no plan settings"
grep -q "SELECT set_config('lock_timeout', \$1::int || 'ms', true)" "$LOCKED_READS" || die "LockedReads.Settings changed shape"

echo "-- generated by bench/pgbench/reports.sh $*: $K report(s) per transaction"
echo "\\set rb random(1, 9000000000000000000)"

if [[ "$MODE" == --lookups ]]; then
  for ((k = 0; k < K; k++)); do
    cat <<SQL
SELECT merchant_id, secret_key_id, scope, key_hash
  FROM secret_keys
 WHERE key_hash = decode(:keyhash, 'hex')
   AND revoked_at IS NULL;
SQL
  done
  cat <<SQL
SELECT m.merchant_id, m.meter_id, m.meter_slug, m.rate_type, m.tier_type, p.version, p.tier_starts, p.tier_rates
  FROM unnest(ARRAY[:m::text], ARRAY['tokens']) AS k(merchant_id, meter_slug)
  JOIN meters m ON m.merchant_id = k.merchant_id AND m.meter_slug = k.meter_slug AND m.deleted_at IS NULL
  JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version;
SQL
fi

USAGE_ARGS=("$(fill :m::text)" "$(fill "'mtr_bench_tokens'::text")" "$(per "$CUSTOMER")" "$(fill "now()")")
CUSTOMER_ARGS=("$(fill :m::text)" "$(per "$CUSTOMER")")

echo "\\startpipeline"
echo "BEGIN;"
echo "SELECT set_config('lock_timeout', 5000::int || 'ms', true), $PLAN_SETTINGS;"
bind LockUsage "${USAGE_ARGS[@]}"
bind SelectUsage "${USAGE_ARGS[@]}"
bind LockBalances "$(fill :m::text $((3 * K)))" \
  "ARRAY(SELECT $CUSTOMER || ':' || a FROM generate_series(0, $((K - 1))) AS g, unnest(ARRAY['credits_bundle', 'credits_cycle', 'receivable']) AS a ORDER BY g, a)"
bind LockHolds "'{}'::text[]" "'{}'::text[]"
bind SelectExisting "$(fill :m::text)" "$(per "$REQUEST")"
bind SelectCustomers "${CUSTOMER_ARGS[@]}"
bind SelectPlanMeters "${CUSTOMER_ARGS[@]}"
bind SelectLiveKeys "ARRAY[:m::text]" "ARRAY[:keyid::text]"
bind SelectLiveMeters "ARRAY[:m::text]" "ARRAY['tokens']"
cat <<SQL
\\endpipeline
\\startpipeline
WITH req AS (
    INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version,
                          input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
                          cost, charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response, hold_id)
    SELECT * FROM unnest($(fill :m::text), $(per "$REQUEST"), $(per "sha256($REQUEST::bytea)"),
                         $(fill "'customer'::text"), $(per "$CUSTOMER"), $(fill "'mtr_bench_tokens'::text"), $(fill 1),
                         $(per "$TOKENS - 200" bigint), $(fill 200::bigint), $(fill 0::bigint), $(fill 0::bigint),
                         $(fill 0::numeric), $(fill 0::numeric),
                         $(fill NULL::numeric), $(per "$TOKENS * 5 / 1000000::numeric"), $(fill :meta::jsonb),
                         $(fill 'now()'), $(fill 'now()'), $(per "$TXN"),
                         $(fill 201::smallint), $(fill :resp::text), $(fill NULL::text))
), txn AS (
    INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version,
                                     lineage, lineage_compact, effective_at, created_at)
    SELECT * FROM unnest($(fill :m::text), $(per "$TXN"), $(fill "'usage'::text"), $(per "$REQUEST"),
                         $(per "$CUSTOMER"), $(fill "'mtr_bench_tokens'::text"), $(fill 1), $(fill "'{}'::jsonb"), $(fill :lineage::text),
                         $(fill 'now()'), $(fill 'now()'))
), ent AS (
    INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
    SELECT e.merchant_id, e.transaction_id, e.account_id, a.currency, e.amount
      FROM unnest($(fill :m::text $((3 * K))), $(per3 "$TXN"),
                  $(per3 "$ACCOUNT"),
                  $(per3 "$TOKENS * v.share / 1000000::numeric"))
           AS e(merchant_id, transaction_id, account_id, amount)
      JOIN accounts a ON a.merchant_id = e.merchant_id AND a.account_id = e.account_id
), used AS (
    UPDATE usage_totals u SET quantity = u.quantity + d.quantity
      FROM unnest($(fill :m::text), $(fill "'mtr_bench_tokens'::text"), $(per "$CUSTOMER"), $(fill "$PERIOD"),
                  $(per "$TOKENS" numeric))
           AS d(merchant_id, meter_id, customer_id, period_start, quantity)
     WHERE u.merchant_id = d.merchant_id AND u.meter_id = d.meter_id AND u.customer_id = d.customer_id
       AND u.period_start = d.period_start
), captured AS (
    UPDATE holds h SET status = 'captured', captured_amount = least(h.amount, c.charge), request_id = c.request_id, closed_at = c.at
      FROM unnest('{}'::text[], '{}'::text[], '{}'::numeric[], '{}'::text[], '{}'::timestamptz[]) AS c(merchant_id, hold_id, charge, request_id, at)
     WHERE h.merchant_id = c.merchant_id AND h.hold_id = c.hold_id AND h.status = 'active'
)
SELECT 1;
COMMIT;
\\endpipeline
SQL
