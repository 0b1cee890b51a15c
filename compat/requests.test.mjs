// lava.requests: create (usage reports), replay by request_id, retrieve, list (paging, customer and metadata filters).
// Money is a 10-dp string everywhere (docs/design.md, "Wire conventions"); a fixed tokens_1m rate is credits per 1M input+output tokens.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MONEY, apiError, assertTimestamp, client, limits, listAll, once, unique } from './support.mjs';

const lava = client();

const tokensMeter = once(() => {
  const slug = unique('compat-req-mtr');
  return lava.meters.create({
    name: 'Compat tokens', meter_slug: slug, rate_type: 'fixed', tier_type: 'tokens_1m', tiers: [{ start: '0', rate: '5' }],
  });
});

const newCustomer = () => lava.customers.create({ reference_id: unique('compat-req-cus'), name: 'Grace Hopper' });

async function report(customer, meter, overrides = {}) {
  return lava.requests.create({
    request_id: unique('req'),
    customer_id: customer.customer_id,
    meter_slug: meter.meter_slug,
    input_tokens: 1000,
    output_tokens: 0,
    ...overrides,
  });
}

function assertRequest(request) {
  assert.equal(typeof request.request_id, 'string');
  assert.ok(['pending', 'completed', 'error'].includes(request.status), `status ${request.status}`);
  assert.equal(typeof request.provider, 'string');
  assert.ok(['managed', 'unmanaged', 'stored'].includes(request.provider_key_type), `provider_key_type ${request.provider_key_type}`);
  assert.equal(typeof request.endpoint, 'string');
  const usage = request.model_usage;
  for (const field of ['input_tokens', 'output_tokens', 'total_tokens', 'input_characters', 'output_characters',
    'total_characters', 'input_seconds', 'output_seconds', 'total_seconds']) {
    assert.equal(typeof usage[field], 'number', `model_usage.${field} is a number`);
  }
  for (const field of ['input_cost', 'output_cost', 'total_cost']) assert.match(usage[field], MONEY, `model_usage.${field}`);
  assert.match(request.cost, MONEY, 'cost');
  assert.match(request.charge.amount, MONEY, 'charge.amount');
  assert.ok(['fixed', 'percentage'].includes(request.charge.rate_type));
  assert.ok(Array.isArray(request.charge.breakdown));
  for (const line of request.charge.breakdown) {
    assert.equal(typeof line.tier.start, 'number');
    assert.match(line.tier.rate, MONEY, 'breakdown tier rate');
    assert.match(line.cost, MONEY, 'breakdown cost');
    for (const field of ['tokens', 'characters', 'seconds']) assert.equal(typeof line[field], 'number', `breakdown ${field}`);
  }
  assert.equal(typeof request.metadata, 'object');
  assertTimestamp(request.created_at, 'created_at');
}

describe('requests', () => {
  test('a report of 1M input + 200K output tokens at 5 per 1M charges exactly 6', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const requestId = unique('req');
    const request = await lava.requests.create({
      request_id: requestId,
      customer_id: customer.customer_id,
      meter_slug: meter.meter_slug,
      input_tokens: 1_000_000,
      output_tokens: 200_000,
      metadata: { team: 'a', feature: 'chat' },
    });
    assertRequest(request);
    assert.equal(request.request_id, requestId);
    assert.equal(request.status, 'completed');
    assert.equal(request.customer_id, customer.customer_id);
    assert.equal(request.meter_id, meter.meter_id);
    assert.equal(request.model_usage.input_tokens, 1_000_000);
    assert.equal(request.model_usage.output_tokens, 200_000);
    assert.equal(request.model_usage.total_tokens, 1_200_000);
    assert.equal(request.charge.amount, '6.0000000000');
    assert.equal(request.charge.rate_type, 'fixed');
    assert.deepEqual(request.charge.breakdown, [{
      tier: { start: 0, rate: '5.0000000000', type: 'tokens_1m' }, tokens: 1_200_000, characters: 0, seconds: 0, cost: '6.0000000000',
    }]);
    assert.deepEqual(request.metadata, { team: 'a', feature: 'chat' });
  });

  test('replaying a request_id with the same body answers the original request', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const params = {
      request_id: unique('req'), customer_id: customer.customer_id, meter_slug: meter.meter_slug,
      input_tokens: 1_000_000, output_tokens: 200_000, metadata: { team: 'a' },
    };
    const first = await lava.requests.create(params);
    const replay = await lava.requests.create({ ...params });
    assert.deepEqual(replay, first);
    assert.equal(replay.charge.amount, '6.0000000000', 'the replay is not charged again at a later tier or price');
  });

  test('reusing a request_id with a different body is a 409 idempotency_conflict', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const first = await report(customer, meter);
    const conflict = await apiError(() => report(customer, meter, { request_id: first.request_id, input_tokens: 2000 }));
    assert.equal(conflict.status, 409, conflict.message);
    assert.equal(conflict.error.code, 'idempotency_conflict');
  });

  test('a request is retrieved by its request_id as it was created', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const created = await report(customer, meter, { metadata: { team: 'b' } });
    assert.deepEqual(await lava.requests.retrieve(created.request_id), created);
  });

  test('listing a customer\'s requests with limit 1 pages through exactly them', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const made = [];
    for (let i = 0; i < 3; i++) made.push(await report(customer, meter));
    await report(await newCustomer(), meter); // another customer's request must not show up

    const { items, pages } = await listAll((p) => lava.requests.list(p), { customer_id: customer.customer_id, limit: 1 });
    assert.deepEqual(items.map((r) => r.request_id).sort(), made.map((r) => r.request_id).sort());
    assert.equal(pages.length, 3, 'three requests at one a page are three pages');
    assert.ok(pages.every((p) => p.data.length === 1));
    items.forEach(assertRequest);
    for (const request of made) assert.deepEqual(items.find((r) => r.request_id === request.request_id), request);
  });

  test('metadata_filters narrows the list to requests whose metadata matches', limits, async () => {
    const [meter, customer] = [await tokensMeter(), await newCustomer()];
    const teamA = [await report(customer, meter, { metadata: { team: 'a' } }),
      await report(customer, meter, { metadata: { team: 'a', env: 'prod' } })];
    await report(customer, meter, { metadata: { team: 'b' } });
    await report(customer, meter);

    const mine = await listAll((p) => lava.requests.list(p),
      { customer_id: customer.customer_id, metadata_filters: { team: 'a' }, limit: 100 });
    assert.deepEqual(mine.items.map((r) => r.request_id).sort(), teamA.map((r) => r.request_id).sort());

    const everyone = await listAll((p) => lava.requests.list(p), { metadata_filters: { team: 'a' }, limit: 100 });
    assert.ok(everyone.items.every((r) => r.metadata.team === 'a'), 'every request listed has team a');
    for (const request of teamA) assert.ok(everyone.items.some((r) => r.request_id === request.request_id));
  });

  test('a graduated meter prices each token at the tier its cumulative position falls in', limits, async () => {
    const customer = await newCustomer();
    const meter = await lava.meters.create({
      name: 'Compat graduated', meter_slug: unique('compat-req-grad'), rate_type: 'fixed', tier_type: 'tokens_1m',
      tiers: [{ start: '0', rate: '5' }, { start: '1000000', rate: '3' }, { start: '10000000', rate: '1' }],
    });
    // docs/design.md, "Graduated tiers": 5M tokens cost 5 + 12 = 17; a further 6M in the same period cost 15 + 1 = 16.
    const first = await report(customer, meter, { input_tokens: 5_000_000 });
    assert.equal(first.charge.amount, '17.0000000000');
    assert.deepEqual(first.charge.breakdown.map((l) => [l.tier.start, l.tokens, l.cost]),
      [[0, 1_000_000, '5.0000000000'], [1_000_000, 4_000_000, '12.0000000000']]);
    const second = await report(customer, meter, { input_tokens: 6_000_000 });
    assert.equal(second.charge.amount, '16.0000000000');
    assert.deepEqual(second.charge.breakdown.map((l) => [l.tier.start, l.tokens, l.cost]),
      [[1_000_000, 5_000_000, '15.0000000000'], [10_000_000, 1_000_000, '1.0000000000']]);
  });
});
