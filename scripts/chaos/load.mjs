// The chaos load client: drives single reports, batches and billed gateway calls against the service while
// scripts/chaos.sh kills it and its database, and keeps a record of what was acknowledged.
//
//   node scripts/chaos/load.mjs URL SETUP_JSON PROVIDER_URL OUT_JSON [SEED]
//
// Every unknown outcome (no answer, a cut answer, a timeout, a 5xx, 429) is retried with the SAME request id until the
// service gives a definitive answer (2xx, or a 4xx refusal). A gateway call has no client-chosen id (the service names
// it), so an unknown gateway outcome is a new call: each attempt carries its own x-chaos-call id, which the gateway
// passes to the provider (header) and stores with the usage (x-lava-metadata), so served and billed can be matched.
// SIGTERM: start no new work, keep retrying what is open until CHAOS_DRAIN_SECONDS (default 90) have passed, then
// write OUT_JSON and exit 0.
import { writeFileSync } from 'node:fs';
import { bearer, call, forwardToken, json, prng, readJson, sleep, stackTraceIn } from './lib.mjs';

const [url, setupPath, providerUrl, outPath, seedArg = '1'] = process.argv.slice(2);
if (!url || !setupPath || !providerUrl || !outPath) {
  process.stderr.write('usage: node scripts/chaos/load.mjs URL SETUP_JSON PROVIDER_URL OUT_JSON [SEED]\n');
  process.exit(2);
}
const setup = readJson(setupPath);
const env = (name, fallback) => Number(process.env[name] ?? fallback);
const SINGLE_WORKERS = env('CHAOS_SINGLE_WORKERS', 6);
const BATCH_WORKERS = env('CHAOS_BATCH_WORKERS', 2);
const GATEWAY_WORKERS = env('CHAOS_GATEWAY_WORKERS', 4);
const DRAIN_MS = env('CHAOS_DRAIN_SECONDS', 90) * 1000;
const TIMEOUT_MS = env('CHAOS_REQUEST_TIMEOUT_SECONDS', 20) * 1000;
const seed = Number(seedArg);
const started = Date.now();
let stopping = false;
let drainDeadline = Infinity;

// ---------- the record ----------
const reports = new Map();   // request_id -> {kind, state: 'open'|'ack'|'refused', attempts, poison, expect, code, charge}
const gatewayCalls = [];     // one per attempt: {call, stream, state: 'open'|'ack'|'refused'|'unknown', request_id, status, detail}
const acks = [];             // completion time (ms since the epoch) of every acknowledged answer
const statuses = {};         // "route status" -> count; network failures as "route network" etc.
const http500 = [];          // first few 500 answers: route, request, body
const leaks = [];            // stack traces seen in answers
const conflicts = [];        // 409 idempotency_conflict on a retry of the same payload
let retryAfterMissing = 0;   // 503 answers without Retry-After

function count(route, outcome) {
  const k = `${route} ${outcome}`;
  statuses[k] = (statuses[k] ?? 0) + 1;
}

function note(route, response, what) {
  if (response.error) {
    count(route, response.error);
    return;
  }
  count(route, response.status);
  const text = response.body.toString('utf8');
  const leak = stackTraceIn(text);
  if (leak) leaks.push({ route, what, status: response.status, excerpt: leak });
  if (response.status === 500 && http500.length < 20) http500.push({ route, what, at: Date.now() - started, body: text.slice(0, 600) });
  if (response.status === 503 && !response.headers['retry-after']) retryAfterMissing++;
}

const unknown = (response) => response.error || response.status >= 500 || response.status === 429 || response.status === 408;
const backoff = (attempt) => sleep(Math.min(1000, 100 * 2 ** Math.min(attempt, 4)));
const open = () => !stopping || Date.now() < drainDeadline;

// ---------- reports ----------
const POISONS = [
  // [what, item fields, expected]: every one must get a definitive answer, and must not take other reports down with
  // it; 'refuse' ones must be refused.
  ['no such customer', { customer_id: 'cus_chaos_missing' }, 'refuse'],
  ['negative tokens', { input_tokens: -1 }, 'refuse'],
  ['no such meter', { meter_slug: 'chaos-no-such-meter' }, 'refuse'],
  // 2^62 each (exact in a JavaScript number): each fits a long, their sum does not.
  ['token sum past a long', { input_tokens: 2 ** 62, output_tokens: 2 ** 62 }, 'definitive'],
  ['timestamp in year 1', { timestamp: '0001-01-01T00:00:00Z' }, 'refuse'],
];

function report(rand, id, customer) {
  return {
    request_id: id, customer_id: customer, meter_slug: setup.meter_slug,
    input_tokens: rand.int(100, 4000), output_tokens: rand.int(10, 1000), metadata: { chaos: 'load' },
  };
}

function poisoned(rand, id) {
  const [what, fields, expect] = rand.pick(POISONS);
  return { body: { ...report(rand, id, setup.poison_customer), ...fields }, what, expect };
}

function settle(id, outcome, fields = {}) {
  const entry = reports.get(id);
  Object.assign(entry, { state: outcome }, fields);
  if (outcome === 'ack') acks.push(Date.now());
}

async function singleWorker(w) {
  const rand = prng(seed * 1000 + w);
  for (let n = 0; !stopping; n++) {
    const id = `s-${w}-${n}`;
    const poison = rand.chance(0.02) ? poisoned(rand, id) : null;
    const body = poison?.body ?? report(rand, id, rand.pick(setup.customers));
    reports.set(id, { kind: 'single', state: 'open', attempts: 0, poison: poison?.what, expect: poison?.expect });
    const payload = json(body);
    for (let attempt = 0; open(); attempt++) {
      reports.get(id).attempts++;
      const response = await call(url, { method: 'POST', path: '/v1/requests', headers: bearer(setup.key), body: payload, timeoutMs: TIMEOUT_MS });
      note('POST /v1/requests', response, id);
      if (unknown(response)) {
        await backoff(attempt);
        continue;
      }
      const answer = JSON.parse(response.body.toString('utf8') || 'null');
      if (response.status < 300) settle(id, 'ack', { charge: answer?.charge?.amount, replayed: response.headers['idempotent-replayed'] === 'true' });
      else {
        settle(id, 'refused', { status: response.status, code: answer?.error?.code });
        if (answer?.error?.code === 'idempotency_conflict') conflicts.push({ id, attempt });
      }
      break;
    }
  }
}

async function batchWorker(w) {
  const rand = prng(seed * 1000 + 100 + w);
  for (let n = 0; !stopping; n++) {
    const size = rand.int(5, 30);
    const items = [];
    for (let i = 0; i < size; i++) {
      const id = `b-${w}-${n}-${i}`;
      const poison = i === 0 && rand.chance(0.2) ? poisoned(rand, id) : null;
      items.push(poison?.body ?? report(rand, id, rand.pick(setup.customers)));
      reports.set(id, { kind: 'batch', batch: `b-${w}-${n}`, state: 'open', attempts: 0, poison: poison?.what, expect: poison?.expect });
    }
    // Retried with the same ids; items already answered definitively drop out of the retry.
    let pending = items;
    for (let attempt = 0; pending.length > 0 && open(); attempt++) {
      for (const item of pending) reports.get(item.request_id).attempts++;
      const response = await call(url, {
        method: 'POST', path: '/v1/requests/batch', headers: bearer(setup.key), body: json({ requests: pending }), timeoutMs: TIMEOUT_MS,
      });
      note('POST /v1/requests/batch', response, `b-${w}-${n}`);
      if (unknown(response)) {
        await backoff(attempt);
        continue;
      }
      if (response.status >= 300) {
        // The whole call refused: every item with it.
        for (const item of pending) settle(item.request_id, 'refused', { status: response.status, code: 'batch_refused' });
        break;
      }
      const { data } = JSON.parse(response.body.toString('utf8'));
      const next = [];
      data.forEach((outcome, i) => {
        const item = pending[i];
        const id = item.request_id;
        if (outcome.status === 'created' || outcome.status === 'replayed')
          settle(id, 'ack', { charge: outcome.request?.charge?.amount, replayed: outcome.status === 'replayed' });
        else if ((outcome.error?.status ?? 400) >= 500) next.push(item);
        else {
          settle(id, 'refused', { status: outcome.error?.status, code: outcome.error?.error?.code ?? outcome.status });
          if (outcome.status === 'conflict') conflicts.push({ id, attempt });
        }
      });
      pending = next;
      if (pending.length) await backoff(attempt);
    }
  }
}

// ---------- gateway calls ----------
async function gatewayWorker(w) {
  const rand = prng(seed * 1000 + 200 + w);
  const stream = w % 2 === 0;
  const path = `/v1/forward?u=${encodeURIComponent(`${providerUrl}/v1/chat/completions`)}`;
  for (let n = 0; !stopping; n++) {
    const customer = rand.pick(setup.customers);
    const token = forwardToken({ secret_key: setup.key, customer_id: customer, meter_slug: setup.meter_slug });
    const body = json({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `chaos ${w} ${n}` }], max_tokens: 50, stream });
    for (let attempt = 0; open(); attempt++) {
      const id = `g-${w}-${n}-a${attempt}`;
      const record = { call: id, customer, stream, state: 'open' };
      gatewayCalls.push(record);
      const response = await call(url, {
        method: 'POST', path, body, timeoutMs: TIMEOUT_MS,
        headers: {
          authorization: `Bearer ${token}`, 'content-type': 'application/json',
          'x-chaos-call': id, 'x-lava-metadata': JSON.stringify({ chaos_call: id }),
        },
      });
      note(stream ? 'POST /v1/forward (stream)' : 'POST /v1/forward', response, id);
      record.status = response.status;
      record.request_id = response.headers?.['x-lava-request-id'];
      const whole = !response.error && (!stream || response.body.toString('utf8').includes('data: [DONE]'));
      if (unknown(response) || !whole) {
        record.state = 'unknown';
        record.detail = response.error ?? (whole ? undefined : 'stream without [DONE]');
        await backoff(attempt);
        continue;
      }
      record.state = response.status < 300 ? 'ack' : 'refused';
      if (record.state === 'ack') acks.push(Date.now());
      break;
    }
  }
}

// ---------- run ----------
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  drainDeadline = Date.now() + DRAIN_MS;
});

const workers = [
  ...Array.from({ length: SINGLE_WORKERS }, (_, w) => singleWorker(w)),
  ...Array.from({ length: BATCH_WORKERS }, (_, w) => batchWorker(w)),
  ...Array.from({ length: GATEWAY_WORKERS }, (_, w) => gatewayWorker(w)),
];
await Promise.all(workers);
const stoppedAt = Date.now();
writeFileSync(outPath, JSON.stringify({
  started, stopped_at: stoppedAt, drained_in_ms: stoppedAt - (drainDeadline - DRAIN_MS),
  reports: Object.fromEntries(reports), gateway_calls: gatewayCalls, acks, statuses, http500, leaks, conflicts,
  retry_after_missing: retryAfterMissing,
}));
process.exit(0);
