// lava.secretKeys: list, create, delete (SDK 11.2.0 has no retrieve for secret keys).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiError, assertTimestamp, client, limits, listAll, secretKey, unique } from './support.mjs';

const lava = client();

function assertSecretKey(key) {
  assert.equal(typeof key.secret_key_id, 'string');
  assert.match(key.secret_key_id, /^key_/);
  assert.equal(typeof key.name, 'string');
  assert.equal(typeof key.secret_key_hint, 'string');
  assertTimestamp(key.created_at, 'created_at');
  assert.equal(key.secret_key, undefined, 'a listed key never carries its secret');
}

describe('secret keys', () => {
  test('listing returns the caller\'s live keys without their secrets', limits, async () => {
    const page = await lava.secretKeys.list();
    assert.ok(page.data.length >= 1, 'the run\'s own key is listed');
    assert.equal(typeof page.has_more, 'boolean');
    page.data.forEach(assertSecretKey);
    assert.ok(page.data.every((k) => !k.secret_key_hint.includes(secretKey)), 'no hint reveals the secret');
  });

  test('a created key is shown once, works at once, and stops working when deleted', limits, async () => {
    const name = unique('compat-key');
    const created = await lava.secretKeys.create({ name });
    assert.equal(created.name, name);
    assert.match(created.secret_key, /^aks_(test|live)_/);
    assertTimestamp(created.created_at, 'created_at');
    assert.ok(!created.secret_key_hint.includes(created.secret_key), 'the hint does not reveal the secret');

    const asNewKey = client(created.secret_key);
    const seen = await listAll((p) => asNewKey.secretKeys.list(p), { limit: 100 });
    const listed = seen.items.find((k) => k.secret_key_id === created.secret_key_id);
    assert.ok(listed, 'the new key authenticates and lists itself');
    assertSecretKey(listed);
    assert.equal(listed.name, name);
    assert.equal(listed.secret_key_hint, created.secret_key_hint);

    const deleted = await lava.secretKeys.delete(created.secret_key_id);
    assert.deepEqual(deleted, { id: created.secret_key_id, deleted: true });

    const refused = await apiError(() => asNewKey.secretKeys.list());
    assert.equal(refused.status, 401);
    const after = await listAll((p) => lava.secretKeys.list(p), { limit: 100 });
    assert.ok(!after.items.some((k) => k.secret_key_id === created.secret_key_id), 'a deleted key is no longer listed');
  });

  test('listing with limit 1 pages through every key by next_cursor', limits, async () => {
    const made = [];
    for (let i = 0; i < 2; i++) made.push(await lava.secretKeys.create({ name: unique('compat-page') }));
    try {
      const { items, pages } = await listAll((p) => lava.secretKeys.list(p), { limit: 1 });
      const ids = items.map((k) => k.secret_key_id);
      assert.equal(new Set(ids).size, ids.length, 'no key appears on two pages');
      for (const key of made) assert.ok(ids.includes(key.secret_key_id), `${key.secret_key_id} is on some page`);
      assert.ok(pages.length >= 3, 'three keys at one a page take at least three pages');
      assert.ok(pages.slice(0, -1).every((p) => p.data.length === 1), 'every page but the last is full');
    } finally {
      for (const key of made) await lava.secretKeys.delete(key.secret_key_id);
    }
  });
});
