// lava.meters: create, list, retrieve (by id and by slug), update, delete.
// The SDK sends tiers as {start: string, rate: string} plus a top-level tier_type; RestMeter answers tiers as
// {start: number, rate: "<10-dp string>", type}. This service also answers tier_type and price_version.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MONEY, apiError, assertTimestamp, client, limits, listAll, unique } from './support.mjs';

const lava = client();

const GRADUATED = [
  { start: '0', rate: '5' },
  { start: '1000000', rate: '3' },
  { start: '10000000', rate: '1' },
];

function createMeter(overrides = {}) {
  const slug = unique('compat-mtr');
  return lava.meters.create({
    name: `Compat ${slug}`,
    meter_slug: slug,
    rate_type: 'fixed',
    tier_type: 'tokens_1m',
    tiers: [{ start: '0', rate: '5' }],
    ...overrides,
  });
}

function assertMeter(meter) {
  assert.match(meter.meter_id, /^mtr_/);
  assert.equal(typeof meter.meter_slug, 'string');
  assert.equal(typeof meter.name, 'string');
  assert.ok(['fixed', 'percentage'].includes(meter.rate_type), `rate_type ${meter.rate_type}`);
  assert.ok(['tokens_1m', 'characters_1m', 'minutes', 'requests'].includes(meter.tier_type), `tier_type ${meter.tier_type}`);
  assert.ok(Array.isArray(meter.tiers) && meter.tiers.length >= 1, 'tiers is a non-empty array');
  for (const tier of meter.tiers) {
    assert.equal(typeof tier.start, 'number', 'tier start is a number');
    assert.match(tier.rate, MONEY, 'tier rate is a 10-dp string');
    assert.equal(tier.type, meter.tier_type, 'each tier names the meter\'s tier type');
  }
  assert.ok(Number.isInteger(meter.price_version) && meter.price_version >= 1, `price_version ${meter.price_version}`);
  assertTimestamp(meter.created_at, 'created_at');
}

describe('meters', () => {
  test('creating a one-tier meter answers a RestMeter with rates as 10-dp strings', limits, async () => {
    const meter = await createMeter();
    assertMeter(meter);
    assert.equal(meter.rate_type, 'fixed');
    assert.equal(meter.tier_type, 'tokens_1m');
    assert.deepEqual(meter.tiers, [{ start: 0, rate: '5.0000000000', type: 'tokens_1m' }]);
  });

  test('creating a graduated three-tier meter keeps the tiers in order', limits, async () => {
    const slug = unique('compat-grad');
    const meter = await lava.meters.create({
      name: 'Graduated tokens', meter_slug: slug, rate_type: 'fixed', tier_type: 'tokens_1m', tiers: GRADUATED,
    });
    assertMeter(meter);
    assert.equal(meter.meter_slug, slug);
    assert.equal(meter.name, 'Graduated tokens');
    assert.deepEqual(meter.tiers, [
      { start: 0, rate: '5.0000000000', type: 'tokens_1m' },
      { start: 1000000, rate: '3.0000000000', type: 'tokens_1m' },
      { start: 10000000, rate: '1.0000000000', type: 'tokens_1m' },
    ]);
  });

  test('listing with limit 1 pages through every meter by next_cursor', limits, async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push(await createMeter());
    const { items, pages } = await listAll((p) => lava.meters.list(p), { limit: 1 });
    const ids = items.map((m) => m.meter_id);
    assert.equal(new Set(ids).size, ids.length, 'no meter appears on two pages');
    for (const meter of made) {
      const listed = items.find((m) => m.meter_id === meter.meter_id);
      assert.ok(listed, `${meter.meter_id} is on some page`);
      assert.deepEqual(listed, meter, 'a listed meter equals the created one');
    }
    assert.ok(pages.length >= 3);
    assert.ok(pages.slice(0, -1).every((p) => p.data.length === 1), 'every page but the last is full');
    assert.equal(pages.at(-1).has_more, false);
  });

  test('a meter is retrieved by its id and by its slug', limits, async () => {
    const meter = await createMeter({ tier_type: 'requests', tiers: [{ start: '0', rate: '0.25' }] });
    assert.deepEqual(meter.tiers, [{ start: 0, rate: '0.2500000000', type: 'requests' }]);
    assert.deepEqual(await lava.meters.retrieve(meter.meter_id), meter);
    assert.deepEqual(await lava.meters.retrieve(meter.meter_slug), meter);
  });

  test('updating tiers makes a new price version and keeps the id and slug', limits, async () => {
    const meter = await createMeter();
    const updated = await lava.meters.update(meter.meter_id, { name: 'Renamed', tiers: GRADUATED.slice(0, 2) });
    assertMeter(updated);
    assert.equal(updated.meter_id, meter.meter_id);
    assert.equal(updated.meter_slug, meter.meter_slug);
    assert.equal(updated.name, 'Renamed');
    assert.deepEqual(updated.tiers, [
      { start: 0, rate: '5.0000000000', type: 'tokens_1m' },
      { start: 1000000, rate: '3.0000000000', type: 'tokens_1m' },
    ]);
    assert.ok(updated.price_version > meter.price_version, 'price_version goes up');
    assert.deepEqual(await lava.meters.retrieve(meter.meter_id), updated);
  });

  test('deleting a meter answers {id, deleted: true} and it is gone', limits, async () => {
    const meter = await createMeter();
    assert.deepEqual(await lava.meters.delete(meter.meter_id), { id: meter.meter_id, deleted: true });
    const gone = await apiError(() => lava.meters.retrieve(meter.meter_id));
    assert.equal(gone.status, 404);
    assert.equal(gone.error.code, 'not_found');
  });
});
