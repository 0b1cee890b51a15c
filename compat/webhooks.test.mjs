// lava.webhooks: create (secret shown once), list, retrieve, update, delete; and a delivery to a receiver on
// loopback (compat/run.sh lets the service call private addresses), checked the way a merchant would: Lava's
// X-Webhook-Signature (hex HMAC-SHA256 of the raw body) and Standard Webhooks' webhook-signature.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { apiError, assertTimestamp, client, limits, listAll, unique } from './support.mjs';

const lava = client();

function assertWebhook(webhook) {
  assert.match(webhook.webhook_id, /^whk_/);
  assert.equal(typeof webhook.name, 'string');
  assert.equal(typeof webhook.url, 'string');
  assertTimestamp(webhook.created_at, 'created_at');
}

/** A merchant's endpoint: every delivery as { headers, body }. */
function receiver() {
  const received = [];
  const waiters = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200).end();
      waiters.splice(0).forEach((w) => w());
    });
  });
  const listening = new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    received,
    url: async () => { await listening; return `http://127.0.0.1:${server.address().port}/hooks`; },
    async waitFor(predicate, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      while (!predicate(received)) {
        if (Date.now() > until) assert.fail(`no matching delivery within ${timeoutMs} ms: ${received.map((r) => r.body).join(' | ')}`);
        await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 100); });
      }
      return received;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const sameText = (a, b) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

describe('webhooks', () => {
  const endpoint = receiver();
  after(() => endpoint.close());

  test('a webhook is created with its secret once, then listed, retrieved, updated and deleted', limits, async () => {
    const name = unique('compat-hook');
    const created = await lava.webhooks.create({ name, url: 'https://hooks.example.com/lava' });
    assertWebhook(created);
    assert.equal(created.name, name);
    assert.match(created.webhook_secret, /^whsec_[A-Za-z0-9+/]+=*$/);

    const retrieved = await lava.webhooks.retrieve(created.webhook_id);
    assertWebhook(retrieved);
    assert.equal(retrieved.url, 'https://hooks.example.com/lava');
    assert.equal(retrieved.webhook_secret, undefined, 'the secret is shown only at creation');

    const listed = await listAll((p) => lava.webhooks.list(p), { limit: 2 });
    assert.ok(listed.items.some((w) => w.webhook_id === created.webhook_id));
    listed.items.forEach(assertWebhook);

    const updated = await lava.webhooks.update(created.webhook_id, { url: 'https://hooks.example.com/v2' });
    assert.equal(updated.url, 'https://hooks.example.com/v2');
    assert.equal(updated.name, name);

    assert.deepEqual(await lava.webhooks.delete(created.webhook_id), { id: created.webhook_id, deleted: true });
    const gone = await apiError(() => lava.webhooks.retrieve(created.webhook_id));
    assert.equal(gone.status, 404);
  });

  test('a URL that is not http(s) is refused', limits, async () => {
    const e = await apiError(() => lava.webhooks.create({ name: unique('bad'), url: 'ftp://hooks.example.com' }));
    assert.equal(e.status, 400);
    assert.equal(e.error.code, 'validation_failed');
  });

  test('a new customer reaches the endpoint as customer.created, signed both ways', limits, async () => {
    const hook = await lava.webhooks.create({ name: unique('compat-live'), url: await endpoint.url() });
    const customer = await lava.customers.create({ name: 'Grace Hopper', reference_id: unique('compat-cus') });
    const [delivery] = (await endpoint.waitFor((all) => all.some((r) => r.body.includes(customer.customer_id))))
      .filter((r) => r.body.includes(customer.customer_id));
    const payload = JSON.parse(delivery.body);
    assert.equal(payload.event, 'customer.created');
    assert.equal(payload.data.customer_id, customer.customer_id);
    assert.equal(payload.data.contact.first_name, 'Grace');
    assert.equal(payload.data.subscription, null);

    const lavaSignature = createHmac('sha256', hook.webhook_secret).update(delivery.body).digest('hex');
    assert.ok(sameText(delivery.headers['x-webhook-signature'], lavaSignature), 'X-Webhook-Signature verifies');

    const key = Buffer.from(hook.webhook_secret.slice('whsec_'.length), 'base64');
    const id = delivery.headers['webhook-id'];
    const timestamp = delivery.headers['webhook-timestamp'];
    const expected = 'v1,' + createHmac('sha256', key).update(`${id}.${timestamp}.${delivery.body}`).digest('base64');
    assert.ok(delivery.headers['webhook-signature'].split(' ').some((s) => sameText(s, expected)), 'webhook-signature verifies');
    assert.ok(Math.abs(Date.now() / 1000 - Number(timestamp)) < 300, 'the timestamp is current');

    await lava.webhooks.delete(hook.webhook_id);
  });
});
