// The chaos run's verdict, read from the database (the truth) against what the load client was told and what the
// provider served. Also takes the money baseline before the load starts.
//
//   node scripts/chaos/check.mjs baseline CONN SETUP_JSON OUT_JSON
//   node scripts/chaos/check.mjs verdict  CONN SETUP_JSON BASELINE_JSON LOAD_JSON SERVED_LOG EVENTS_LOG SERVICE_DLL
//
// The verdict prints one line per check, "PASS name: detail" or "FAIL name: detail", then the figures, and exits 1
// when any check failed. CONN names one host (the primary, after a failover). The faults planned come from
// CHAOS_KILLS, CHAOS_PG_STOPS and CHAOS_FAILOVERS (scripts/chaos-ha.sh); CHAOS_FIGURES=FILE also writes the figures
// as JSON there. CHAOS_SETTLE_SECONDS (default 60): how long the service may take, after the load stopped,
// to bill the calls a crash interrupted and release their holds (its recovery window); polled, so a service that
// settles at once passes at once.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { database, readJson, sleep } from './lib.mjs';

const [mode, conn, setupPath, ...rest] = process.argv.slice(2);
const setup = readJson(setupPath);
const db = await database(conn);
const merchant = setup.merchant_id;

// Per customer: the sum of the entries on its accounts (credits, receivable). Usage moves it by exactly the charge.
async function customerSums() {
  const { rows } = await db.query(`
    SELECT a.customer_id, coalesce(sum(e.amount), 0)::text AS total
      FROM accounts a LEFT JOIN entries e ON e.merchant_id = a.merchant_id AND e.account_id = a.account_id
     WHERE a.merchant_id = $1 AND a.customer_id IS NOT NULL
     GROUP BY a.customer_id`, [merchant]);
  return Object.fromEntries(rows.map((r) => [r.customer_id, r.total]));
}

if (mode === 'baseline') {
  writeFileSync(rest[0], JSON.stringify(await customerSums()));
  await db.end();
  process.exit(0);
}

const [baselinePath, loadPath, servedPath, eventsPath, dll] = rest;
const baseline = readJson(baselinePath);
const load = readJson(loadPath);
const settleMs = Number(process.env.CHAOS_SETTLE_SECONDS ?? 60) * 1000;
const results = [];
const check = (name, ok, detail) => {
  results.push({ name, ok });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
};
const sample = (list, n = 5) => (list.length ? ` e.g. ${list.slice(0, n).join(', ')}` : '');
const lines = (path) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

// ---------- what the client was told ----------
const reports = Object.entries(load.reports);
const by = (f) => reports.filter(([, r]) => f(r)).map(([id]) => id);
const acked = by((r) => r.state === 'ack');
const ackedSingles = by((r) => r.state === 'ack' && r.kind === 'single' && !r.poison);
const ackedBatch = by((r) => r.state === 'ack' && r.kind === 'batch' && !r.poison);
const unresolved = by((r) => r.state === 'open');
const unresolvedPoison = by((r) => r.state === 'open' && r.poison);
const refusedValid = reports.filter(([, r]) => r.state === 'refused' && !r.poison);
const poisonAccepted = by((r) => r.state === 'ack' && r.poison && r.expect === 'refuse');
const refused = by((r) => r.state === 'refused');
const gatewayAcks = load.gateway_calls.filter((c) => c.state === 'ack');

// ---------- the database ----------
// One snapshot for every money check below: a settle worker may still post a call while they read, and reading the
// requests and the customers' entries at two moments would count its charge on one side only.
await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
const stored = new Map((await db.query(
  `SELECT request_id, customer_id, charge_amount::text AS charge, metadata->>'chaos_call' AS chaos_call
     FROM requests WHERE merchant_id = $1`, [merchant])).rows.map((r) => [r.request_id, r]));
const lost = acked.filter((id) => !stored.has(id));
const refusedButStored = refused.filter((id) => stored.has(id));

const doubledTransactions = (await db.query(`
  SELECT reference, count(*)::int AS n, string_agg(kind, ',') AS kinds FROM ledger_transactions
   WHERE merchant_id = $1 GROUP BY reference HAVING count(*) > 1`, [merchant])).rows;
const orphanUsage = (await db.query(`
  SELECT t.reference FROM ledger_transactions t
   WHERE t.merchant_id = $1 AND t.kind = 'usage'
     AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.merchant_id = t.merchant_id AND r.transaction_id = t.transaction_id)`,
[merchant])).rows.map((r) => r.reference);

// Money: each customer's accounts moved by exactly the sum of the charges stored for it since the baseline.
const sums = await customerSums();
const charged = {};
for (const r of stored.values()) if (r.customer_id) charged[r.customer_id] = (charged[r.customer_id] ?? 0n) + cents(r.charge);
function cents(decimal) {
  // numeric(38,10) as an exact integer count of 1e-10 units.
  const [whole, fraction = ''] = decimal.replace('-', '').split('.');
  const value = BigInt(whole) * 10n ** 10n + BigInt((fraction + '0000000000').slice(0, 10));
  return decimal.startsWith('-') ? -value : value;
}
const moneyMismatch = [];
for (const customer of new Set([...Object.keys(sums), ...Object.keys(charged)])) {
  const moved = cents(sums[customer] ?? '0') - cents(baseline[customer] ?? '0');
  const expected = charged[customer] ?? 0n;
  if (moved !== expected) moneyMismatch.push(`${customer} moved ${moved} expected ${expected} (1e-10 units)`);
}
const balanceDrift = (await db.query(`
  SELECT b.merchant_id, b.account_id, b.balance::text AS cached, coalesce(s.total, 0)::text AS entries
    FROM account_balances b
    LEFT JOIN (SELECT merchant_id, account_id, sum(amount) AS total FROM entries GROUP BY 1, 2) s USING (merchant_id, account_id)
   WHERE b.balance <> coalesce(s.total, 0)`)).rows;
await db.query('COMMIT');

// ---------- gateway calls: served by the provider vs billed ----------
const served = new Map();   // x-chaos-call -> how many times the provider accepted it
for (const line of lines(servedPath)) {
  if (line.event !== 'served' || !line.call.startsWith('g-')) continue;
  served.set(line.call, (served.get(line.call) ?? 0) + 1);
}
const cutCalls = new Set(lines(servedPath).filter((l) => l.event === 'cut').map((l) => l.call));
const billedCounts = async () => {
  const { rows } = await db.query(`
    SELECT metadata->>'chaos_call' AS call, count(*)::int AS n FROM requests
     WHERE merchant_id = $1 AND metadata ? 'chaos_call' GROUP BY 1`, [merchant]);
  return new Map(rows.map((r) => [r.call, r.n]));
};
const activeHolds = async () => (await db.query(`
  SELECT count(*)::int AS active, count(*) FILTER (WHERE expires_at > now())::int AS reserving
    FROM holds WHERE merchant_id = $1 AND status = 'active'`, [merchant])).rows[0];

// The service's recovery window: wait until nothing is left to settle, or the window has passed.
const settleStart = Date.now();
let billed;
let holds;
let unbilled;
for (;;) {
  billed = await billedCounts();
  holds = await activeHolds();
  unbilled = [...served.keys()].filter((c) => !billed.has(c));
  if ((unbilled.length === 0 && holds.reserving === 0) || Date.now() - settleStart >= settleMs) break;
  await sleep(1000);
}
const settledIn = Date.now() - settleStart;
// A gateway call is billed after its answer went out (perhaps by a settle worker): read the requests again.
const billedIds = new Set((await db.query('SELECT request_id FROM requests WHERE merchant_id = $1', [merchant])).rows.map((r) => r.request_id));
const lostGateway = gatewayAcks.filter((c) => !billed.has(c.call) && !(c.request_id && billedIds.has(c.request_id))).map((c) => c.call);
const doubledGateway = [...billed].filter(([, n]) => n > 1).map(([c, n]) => `${c}×${n}`);
const billedNotServed = [...billed.keys()].filter((c) => !served.has(c));
// Each attempt of the client carries an id of its own, so one id the provider accepted twice is the gateway sending
// one call upstream again (a retry of the provider call, say across a database failover): the user would pay twice.
const sentTwice = [...served].filter(([, n]) => n > 1).map(([c, n]) => `${c}×${n}`);
const unbilledCut = unbilled.filter((c) => cutCalls.has(c));

// The service's own audit, after everything settled: the CLI's `ledger verify` over every merchant.
const verify = spawnSync('dotnet', [dll, 'ledger', 'verify'], {
  env: { ...process.env, ConnectionStrings__Billing: conn }, encoding: 'utf8', timeout: 300_000,
});
const verifyRc = String(verify.status ?? 'killed');
const verifyOut = `${verify.stdout ?? ''}${verify.stderr ?? ''}`;

// ---------- faults and recovery ----------
const events = lines(eventsPath);
const acks = load.acks.slice().sort((a, b) => a - b);
const firstAckIndexAfter = (t) => {
  let lo = 0;
  let hi = acks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (acks[mid] <= t) lo = mid + 1; else hi = mid;
  }
  return lo;
};
const firstAckAfter = (t) => acks[firstAckIndexAfter(t)] ?? null;
// Without service: the longest stretch, from the fault until the next one (or the end of the load), in which no answer
// at all was acknowledged. The load keeps every worker busy, so a stretch that long is the outage a client saw.
const faultTimes = events.filter((x) => x.phase === 'fault').map((x) => x.t).sort((a, b) => a - b);
const withoutService = (t) => {
  const until = Math.min(faultTimes.find((x) => x > t) ?? Infinity, load.stopped_at);
  let longest = 0;
  let from = t;
  for (let i = firstAckIndexAfter(t); i < acks.length && acks[i] <= until; i++) {
    longest = Math.max(longest, acks[i] - from);
    from = acks[i];
  }
  return Math.max(longest, until - from);
};
const faults = [];
for (const e of events.filter((x) => x.phase === 'restarted')) {
  const start = events.find((x) => x.n === e.n && x.phase === 'fault');
  const ready = events.find((x) => x.n === e.n && x.phase === 'ready');
  const first = firstAckAfter(e.t);
  faults.push({ n: e.n, fault: e.fault, mid_stream: start?.mid_stream ?? false, down_ms: e.t - start.t,
    ready_ms: ready ? ready.t - e.t : null, recovery_ms: first === null ? null : first - e.t,
    without_service_ms: withoutService(start.t) });
}
const kills = faults.filter((f) => f.fault === 'kill');
const pgStops = faults.filter((f) => f.fault === 'pg-stop');
const failovers = faults.filter((f) => f.fault === 'failover');
const unrecovered = faults.filter((f) => f.recovery_ms === null);

// ---------- verdict ----------
const planned = {
  kills: Number(process.env.CHAOS_KILLS ?? 20), pgStops: Number(process.env.CHAOS_PG_STOPS ?? 5),
  failovers: Number(process.env.CHAOS_FAILOVERS ?? 0),
};
check('faults injected', kills.length === planned.kills && pgStops.length === planned.pgStops && failovers.length === planned.failovers,
  `${kills.length} of ${planned.kills} service SIGKILLs (${kills.filter((k) => k.mid_stream).length} with a gateway stream in flight), ` +
  `${pgStops.length} of ${planned.pgStops} PostgreSQL immediate stops` +
  (planned.failovers ? `, ${failovers.length} of ${planned.failovers} SIGKILLs of the primary (${failovers.filter((k) => k.mid_stream).length} with a gateway stream in flight)` : ''));
check('a kill landed mid-stream', planned.kills === 0 || kills.some((k) => k.mid_stream),
  `${kills.filter((k) => k.mid_stream).length} kill(s) while the provider was streaming through the gateway`);
check('load was acknowledged', ackedSingles.length > 0 && ackedBatch.length > 0 &&
  gatewayAcks.some((c) => c.stream) && gatewayAcks.some((c) => !c.stream),
  `${ackedSingles.length} single reports, ${ackedBatch.length} batch items, ${gatewayAcks.filter((c) => c.stream).length} streamed and ` +
  `${gatewayAcks.filter((c) => !c.stream).length} whole gateway calls acknowledged`);
check('every fault recovered', unrecovered.length === 0,
  unrecovered.length ? `no acknowledged answer after ${unrecovered.map((f) => `#${f.n} ${f.fault}`).join(', ')}` : `${faults.length} faults`);
check('no acknowledged report lost', lost.length === 0, `${lost.length} of ${acked.length} acknowledged reports missing${sample(lost)}`);
check('no acknowledged gateway call lost', lostGateway.length === 0,
  `${lostGateway.length} of ${gatewayAcks.length} acknowledged gateway calls have no stored request${sample(lostGateway)}`);
check('every report resolved', unresolved.length === 0,
  `${unresolved.length} reports never got a definitive answer despite retries` +
  (unresolvedPoison.length ? ` (${unresolvedPoison.length} of them meant to be refused)` : '') + sample(unresolved));
check('valid reports accepted', refusedValid.length === 0,
  `${refusedValid.length} valid reports refused${sample(refusedValid.map(([id, r]) => `${id} ${r.status} ${r.code}`))}`);
const gatewayRefused = load.gateway_calls.filter((c) => c.state === 'refused');
check('valid gateway calls accepted', gatewayRefused.length === 0,
  `${gatewayRefused.length} gateway calls refused${sample(gatewayRefused.map((c) => `${c.call} ${c.status}`))}`);
check('invalid reports refused', poisonAccepted.length === 0,
  `${poisonAccepted.length} reports meant to be refused were accepted${sample(poisonAccepted)}`);
check('refused reports not stored', refusedButStored.length === 0,
  `${refusedButStored.length} refused reports have a stored request${sample(refusedButStored)}`);
check('retries replay, never conflict', load.conflicts.length === 0,
  `${load.conflicts.length} retries of the same payload answered 409${sample(load.conflicts.map((c) => c.id))}`);
check('nothing posted twice', doubledTransactions.length === 0 && orphanUsage.length === 0,
  `${doubledTransactions.length} references with more than one ledger transaction` +
  `${sample(doubledTransactions.map((d) => `${d.reference}×${d.n} (${d.kinds})`))}; ${orphanUsage.length} usage postings without their request`);
check('customers moved by exactly their charges', moneyMismatch.length === 0,
  `${moneyMismatch.length} customers whose accounts moved by other than their stored charges${sample(moneyMismatch, 3)}`);
check('cached balances equal their entries', balanceDrift.length === 0,
  `${balanceDrift.length} accounts drift${sample(balanceDrift.map((d) => `${d.account_id} ${d.cached}≠${d.entries}`))}`);
check('every served gateway call billed', unbilled.length === 0,
  `${unbilled.length} of ${served.size} calls the provider served have no usage report (${unbilledCut.length} of them cut mid-answer)${sample(unbilled)}`);
check('no gateway call billed twice', doubledGateway.length === 0, `${doubledGateway.length} calls billed more than once${sample(doubledGateway)}`);
check('no gateway call sent to the provider twice', sentTwice.length === 0,
  `${sentTwice.length} of ${served.size} call ids the provider accepted more than once${sample(sentTwice)}`);
check('no hold left active', holds.reserving === 0,
  `${holds.reserving} active holds still reserving credit after ${Math.round(settledIn / 1000)} s (${holds.active} active in all, ` +
  `window CHAOS_SETTLE_SECONDS=${settleMs / 1000})`);
check('no HTTP 500', load.http500.length === 0,
  `${Object.entries(load.statuses).filter(([k]) => k.endsWith(' 500')).reduce((s, [, v]) => s + v, 0)} answers were 500` +
  sample(load.http500.map((h) => `${h.route} ${h.body.slice(0, 120)}`), 2));
check('no stack trace in answers', load.leaks.length === 0, `${load.leaks.length} answers carried a stack trace${sample(load.leaks.map((l) => l.excerpt.slice(0, 120)), 1)}`);
check('ledger verify', verifyRc === '0', `\`ledger verify\` exited ${verifyRc}${verifyRc === '0' ? '' : `: ${verifyOut.slice(0, 400)}`}`);

// ---------- figures ----------
const ms = (list) => {
  const v = list.filter((x) => x !== null).sort((a, b) => a - b);
  if (!v.length) return 'n/a';
  return `min ${v[0]} / median ${v[(v.length - 1) >> 1]} / max ${v[v.length - 1]} ms`;
};
console.log('');
console.log('faults (recovery = restart to the first acknowledged answer):');
for (const f of faults)
  console.log(`  #${String(f.n).padStart(2)} ${f.fault.padEnd(8)}${f.mid_stream ? ' mid-stream' : '           '} down ${f.down_ms} ms, recovery ${f.recovery_ms ?? 'never'} ms${f.ready_ms === null ? '' : ` (/readyz after ${f.ready_ms} ms)`}, without service ${f.without_service_ms} ms`);
console.log(`recovery after a service kill: ${ms(kills.map((f) => f.recovery_ms))}`);
console.log(`recovery after a PostgreSQL stop: ${ms(pgStops.map((f) => f.recovery_ms))}`);
if (failovers.length) console.log(`without service per failover: ${failovers.map((f) => (f.without_service_ms / 1000).toFixed(1)).join(' ')} s`);
console.log('answers by route and status:');
for (const [k, v] of Object.entries(load.statuses).sort()) console.log(`  ${k}: ${v}`);
if (load.retry_after_missing) console.log(`503 answers without Retry-After: ${load.retry_after_missing}`);
console.log('');
console.log('summary:');
console.log(`  acknowledged: ${acked.length} reports (${ackedSingles.length} single, ${ackedBatch.length} batch items, ` +
  `${acked.length - ackedSingles.length - ackedBatch.length} meant-to-be-refused), ${gatewayAcks.length} gateway calls`);
console.log(`  lost: ${lost.length + lostGateway.length}`);
console.log(`  doubled: ${doubledTransactions.length + doubledGateway.length + moneyMismatch.length}`);
console.log(`  unresolved: ${unresolved.length}`);
console.log(`  served by the provider: ${served.size}, unbilled: ${unbilled.length}, billed but never served: ${billedNotServed.length}, sent twice: ${sentTwice.length}`);
console.log(`  active holds: ${holds.reserving} reserving (${holds.active} with status active), settle wait ${Math.round(settledIn / 1000)} s`);
console.log(`  HTTP 500: ${load.http500.length ? Object.entries(load.statuses).filter(([k]) => k.endsWith(' 500')).reduce((s, [, v]) => s + v, 0) : 0}`);
console.log(`  ledger verify: ${verifyRc === '0' ? 'ok' : `failed (exit ${verifyRc})`}`);
const failed = results.filter((r) => !r.ok).length;
if (process.env.CHAOS_FIGURES) {
  const count500 = Object.entries(load.statuses).filter(([k]) => k.endsWith(' 500')).reduce((s, [, v]) => s + v, 0);
  const count503 = Object.entries(load.statuses).filter(([k]) => k.endsWith(' 503')).reduce((s, [, v]) => s + v, 0);
  writeFileSync(process.env.CHAOS_FIGURES, JSON.stringify({
    acked_reports: acked.length, acked_single: ackedSingles.length, acked_batch: ackedBatch.length,
    acked_gateway: gatewayAcks.length, acked_gateway_streamed: gatewayAcks.filter((c) => c.stream).length,
    lost: lost.length + lostGateway.length, doubled: doubledTransactions.length + doubledGateway.length + moneyMismatch.length,
    unresolved: unresolved.length, served: served.size, unbilled: unbilled.length, billed_not_served: billedNotServed.length,
    sent_twice: sentTwice.length, holds_reserving: holds.reserving, settled_in_s: Math.round(settledIn / 1000),
    http500: count500, http503: count503, verify: verifyRc === '0' ? 'ok' : `failed (exit ${verifyRc})`,
    faults, checks_passed: results.length - failed, checks_failed: failed,
  }));
}
console.log(`chaos ${process.env.CHAOS_MODE ?? 'crash'}: ${failed ? 'FAIL' : 'PASS'} (${results.length - failed} checks passed, ${failed} failed)`);
await db.end();
process.exit(failed ? 1 : 0);
