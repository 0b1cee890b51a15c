// lava.checkoutSessions.create through the SDK, then the completion a merchant's payment integration makes (the SDK
// has no method for it: fetch with the same Bearer key), and the test page a developer completes one with by hand.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MONEY, apiError, assertTimestamp, baseUrl, client, limits, secretKey, unique } from './support.mjs';

const lava = client();

const createPlan = () => lava.subscriptions.createPlan({
  name: unique('Compat checkout plan'),
  period_amount: '12.5',
  included_credit: '10',
  billing_interval: 'month',
  rollover_type: 'none',
  bundle_rollover_type: 'none',
  meter_ids: [],
  credit_bundles: [{ name: 'Pack', cost: '3', credit_amount: '4' }],
  default_auto_top_up_bundle_index: null,
});

/** POST checkout_sessions/{id}/complete: what the merchant's payment integration calls once the payment cleared. */
async function complete(sessionId, body) {
  const response = await fetch(new URL(`checkout_sessions/${sessionId}/complete`, baseUrl), {
    method: 'POST',
    headers: { Authorization: `Bearer ${secretKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), body: await response.json() };
}

describe('checkoutSessions', limits, () => {
  test('create answers the SDK\'s RestCheckoutSession for a subscription', async () => {
    const plan = await createPlan();
    const session = await lava.checkoutSessions.create({
      checkout_mode: 'subscription', origin_url: 'https://shop.example/done', plan_id: plan.plan_id,
    });
    assert.match(session.checkout_session_id, /^cs_/);
    assert.match(session.checkout_session_token, /^cst_[0-9A-Za-z]{32}$/);
    assert.equal(session.checkout_mode, 'subscription');
    assert.equal(session.origin_url, 'https://shop.example/done');
    assert.equal(session.plan_id, plan.plan_id);
    assertTimestamp(session.created_at, 'created_at');
    assert.equal(session.completed_at, null);
    assert.match(session.amount, MONEY);
    assert.equal(session.amount, '12.5000000000');
    assert.equal(session.status, 'open');
  });

  test('completing a subscription session subscribes a new customer; the same payment again is a replay', async () => {
    const plan = await createPlan();
    const session = await lava.checkoutSessions.create({ checkout_mode: 'subscription', origin_url: 'https://shop.example', plan_id: plan.plan_id });
    const reference = unique('pay');

    const done = await complete(session.checkout_session_id, { payment_reference: reference, amount: '12.5' });
    assert.equal(done.status, 200);
    assert.equal(done.body.status, 'completed');
    const customer = await lava.customers.retrieve(done.body.customer_id);
    assert.equal(customer.subscription.subscription_id, done.body.subscription_id);
    const { subscription } = await lava.customers.getSubscription(done.body.customer_id);
    assert.equal(subscription.credits.total_remaining, '10.0000000000');

    const again = await complete(session.checkout_session_id, { payment_reference: reference });
    assert.equal(again.status, 200);
    assert.equal(again.replayed, 'true');
    assert.equal(again.body.subscription_id, done.body.subscription_id);
    const other = await complete(session.checkout_session_id, { payment_reference: unique('pay') });
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'checkout_session_completed');
  });

  test('a credit bundle session needs the customer and buys the bundle', async () => {
    const plan = await createPlan();
    const customer = await lava.customers.create({ reference_id: unique('compat-co-cus'), name: 'Grace Hopper', email: 'grace@example.com' });
    await lava.subscriptions.create({ customer_id: customer.customer_id, plan_id: plan.plan_id });
    const bundleId = plan.credit_bundles[0].credit_bundle_id;

    const missing = await apiError(() => lava.checkoutSessions.create({
      checkout_mode: 'credit_bundle', origin_url: 'https://shop.example', credit_bundle_id: bundleId,
    }));
    assert.equal(missing.status, 400);

    const session = await lava.checkoutSessions.create({
      checkout_mode: 'credit_bundle', origin_url: 'https://shop.example', customer_id: customer.customer_id, credit_bundle_id: bundleId,
    });
    assert.equal(session.customer_id, customer.customer_id);
    assert.equal(session.amount, '3.0000000000');
    const done = await complete(session.checkout_session_id, { payment_reference: unique('pay'), amount: 3 });
    assert.equal(done.status, 200);
    const { subscription } = await lava.customers.getSubscription(customer.customer_id);
    assert.equal(subscription.credits.bundle_remaining, '4.0000000000');
  });

  test('unknown plans and bad modes are refused', async () => {
    const unknown = await apiError(() => lava.checkoutSessions.create({ checkout_mode: 'subscription', origin_url: 'https://shop.example', plan_id: 'pln_nope' }));
    assert.equal(unknown.status, 404);
    const mode = await apiError(() => lava.checkoutSessions.create({ checkout_mode: 'gift', origin_url: 'https://shop.example', plan_id: 'pln_nope' }));
    assert.equal(mode.status, 400);
  });

  test('the test page completes a test-mode session by hand', async () => {
    const plan = await createPlan();
    const session = await lava.checkoutSessions.create({ checkout_mode: 'subscription', origin_url: 'https://shop.example', plan_id: plan.plan_id });
    const page = await fetch(session.checkout_url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), new RegExp(session.checkout_session_id));

    const paid = await fetch(session.checkout_url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ checkout_session_token: session.checkout_session_token }),
    });
    assert.equal(paid.status, 200);
    const done = await complete(session.checkout_session_id, { payment_reference: `test_page:${session.checkout_session_id}` });
    assert.equal(done.replayed, 'true');
  });
});
