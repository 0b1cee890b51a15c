// lava.spendKeys: create, list, retrieve, update (PUT), revoke, rotate.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MONEY, apiError, assertTimestamp, client, limits, listAll, unique } from './support.mjs';

const lava = client();

function assertSpendKey(key) {
  assert.match(key.spend_key_id, /^sk_/);
  assert.match(key.key_preview, /^lava_sk_\.\.\./);
  assert.ok(['active', 'paused'].includes(key.status));
  assert.ok(['openai', 'anthropic'].includes(key.request_shape));
  assert.equal(typeof key.wallet_id, 'string');
  assert.match(key.current_spend, MONEY);
  assert.match(key.total_spend, MONEY);
  assert.equal(typeof key.current_requests, 'number');
  assert.equal(typeof key.total_requests, 'number');
  assertTimestamp(key.created_at, 'created_at');
}

describe('spend keys', () => {
  test('a created key is shown once with its limits, and reads back without its key', limits, async () => {
    const name = unique('compat-spend');
    const created = await lava.spendKeys.create({
      name,
      request_shape: 'anthropic',
      allowed_models: ['claude-sonnet-4-5'],
      spend_limit: { amount: '12.50', cycle: 'weekly' },
      request_limit: { count: 100, cycle: 'daily' },
      rate_limit: { rpm: 30, burst: null },
      expires_at: '2031-01-01T00:00:00Z',
    });
    assertSpendKey(created);
    assert.match(created.key, /^lava_sk_/);
    assert.ok(created.key_preview.endsWith(created.key.slice(-4)));
    assert.equal(created.name, name);
    assert.deepEqual(created.spend_limit, { amount: '12.5000000000', cycle: 'weekly' });
    assert.deepEqual(created.request_limit, { count: 100, cycle: 'daily' });
    assert.deepEqual(created.rate_limit, { rpm: 30, burst: null });
    assert.deepEqual(created.allowed_models, ['claude-sonnet-4-5']);
    assert.equal(created.allowed_providers, null);
    assert.equal(created.last_used_at, null);

    const read = await lava.spendKeys.retrieve(created.spend_key_id);
    assertSpendKey(read);
    assert.equal(read.key, undefined, 'a read key never carries its key');
    assert.equal(read.key_preview, created.key_preview);

    const seen = await listAll((p) => lava.spendKeys.list(p), { limit: 2 });
    const listed = seen.items.find((k) => k.spend_key_id === created.spend_key_id);
    assert.ok(listed, 'the new key is listed');
    seen.items.forEach(assertSpendKey);
    assert.equal(listed.key, undefined);
  });

  test('update changes the fields sent (PUT) and leaves the rest', limits, async () => {
    const created = await lava.spendKeys.create({ name: unique('compat-spend'), spend_limit: { amount: '5', cycle: 'daily' } });
    const updated = await lava.spendKeys.update(created.spend_key_id, { status: 'paused', request_limit: { count: 3, cycle: 'total' } });
    assertSpendKey(updated);
    assert.equal(updated.status, 'paused');
    assert.deepEqual(updated.request_limit, { count: 3, cycle: 'total' });
    assert.deepEqual(updated.spend_limit, { amount: '5.0000000000', cycle: 'daily' });
    const cleared = await lava.spendKeys.update(created.spend_key_id, { spend_limit: null });
    assert.equal(cleared.spend_limit, null);
  });

  test('rotate gives a new key for the same spend key and keeps its limits', limits, async () => {
    const created = await lava.spendKeys.create({ name: unique('compat-spend'), rate_limit: { rpm: 10, burst: 5 } });
    const rotated = await lava.spendKeys.rotate(created.spend_key_id);
    assertSpendKey(rotated);
    assert.equal(rotated.spend_key_id, created.spend_key_id);
    assert.match(rotated.key, /^lava_sk_/);
    assert.notEqual(rotated.key, created.key);
    assert.deepEqual(rotated.rate_limit, { rpm: 10, burst: 5 });
  });

  test('revoke answers success and the key is gone', limits, async () => {
    const created = await lava.spendKeys.create({ name: unique('compat-spend') });
    assert.deepEqual(await lava.spendKeys.revoke(created.spend_key_id), { success: true });
    const gone = await apiError(() => lava.spendKeys.retrieve(created.spend_key_id));
    assert.equal(gone.status, 404);
    assert.equal(gone.error.code, 'not_found');
  });

  test('a bad limit is refused with 400', limits, async () => {
    const bad = await apiError(() => lava.spendKeys.create({ name: unique('compat-spend'), spend_limit: { amount: '-1', cycle: 'daily' } }));
    assert.equal(bad.status, 400);
    assert.equal(bad.error.code, 'validation_failed');
  });
});
