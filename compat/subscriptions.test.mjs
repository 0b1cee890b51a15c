// lava.subscriptions (plans and subscriptions), lava.creditBundles and customers.getSubscription
// through the SDK. A plan links a requests meter; usage draws cycle credits, then bundle credits, then goes to the
// receivable (overage), and getSubscription's credits are checked to the 10th decimal after every step.
// The SDK has no method for bundle purchases or the balance: those two calls use fetch with the same Bearer key.
// Clock-driven cycle ends are not reachable from outside the process; the xunit suite moves the clock.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MONEY, apiError, assertTimestamp, baseUrl, client, limits, listAll, once, secretKey, unique } from './support.mjs';

const lava = client();

// 0.7777777777 a request leaves a remainder in every bucket, so an amount rounded or cut anywhere shows up.
const RATE = '0.7777777777';
const requestsMeter = once(() => lava.meters.create({
  name: 'Compat requests', meter_slug: unique('compat-sub-mtr'), rate_type: 'fixed', tier_type: 'requests',
  tiers: [{ start: '0', rate: RATE }],
}));

async function createPlan(overrides = {}) {
  const meter = await requestsMeter();
  return lava.subscriptions.createPlan({
    name: unique('Compat plan'),
    period_amount: '9.99',
    included_credit: '2',
    billing_interval: 'month',
    rollover_type: 'none',
    bundle_rollover_type: 'full',
    meter_ids: [meter.meter_id],
    credit_bundles: [{ name: 'Small pack', cost: '4.99', credit_amount: '1.5' }],
    default_auto_top_up_bundle_index: null,
    ...overrides,
  });
}

const newCustomer = () => lava.customers.create({ reference_id: unique('compat-sub-cus'), name: 'Ada Lovelace', email: 'ada@example.com' });

async function subscribe(customer, plan) {
  const { subscription } = await lava.subscriptions.create({ customer_id: customer.customer_id, plan_id: plan.plan_id });
  return subscription;
}

/** One report of one request on the plan's meter; a requests meter charges RATE each. */
async function useOnce(customer) {
  const meter = await requestsMeter();
  const request = await lava.requests.create({ request_id: unique('req'), customer_id: customer.customer_id, meter_slug: meter.meter_slug });
  assert.equal(request.charge.amount, RATE, 'one request at the fixed rate');
  return request;
}

/** getSubscription's credits, to the 10th decimal. */
async function expectCreditsOf(customer, total, cycle, bundle) {
  const { subscription } = await lava.customers.getSubscription(customer.customer_id);
  assert.ok(subscription, 'the customer has an active subscription');
  assert.deepEqual(subscription.credits, { total_remaining: total, cycle_remaining: cycle, bundle_remaining: bundle });
}

/** POST credit_bundles/{id}/purchases: the SDK has no method for it. */
async function purchase(bundleId, customerId, idempotencyKey) {
  const response = await fetch(new URL(`credit_bundles/${bundleId}/purchases`, baseUrl), {
    method: 'POST',
    headers: { Authorization: `Bearer ${secretKey}`, 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
    body: JSON.stringify({ customer_id: customerId }),
  });
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), body: await response.json() };
}

async function balance(customerId) {
  const response = await fetch(new URL(`customers/${customerId}/balance`, baseUrl), {
    headers: { Authorization: `Bearer ${secretKey}` },
  });
  assert.equal(response.status, 200, 'the balance route answers 200');
  return response.json();
}

function assertPlan(plan) {
  assert.match(plan.plan_id, /^pln_/);
  assert.equal(typeof plan.merchant_id, 'string');
  assert.equal(typeof plan.name, 'string');
  for (const field of ['period_amount', 'included_credit']) assert.match(plan[field], MONEY, field);
  assert.ok(['day', 'week', 'month', 'year'].includes(plan.billing_interval), `billing_interval ${plan.billing_interval}`);
  assert.ok(['full', 'none'].includes(plan.rollover_type), `rollover_type ${plan.rollover_type}`);
  assert.ok(['full', 'none'].includes(plan.bundle_rollover_type), `bundle_rollover_type ${plan.bundle_rollover_type}`);
  assert.ok(plan.default_auto_top_up_bundle_id === null || typeof plan.default_auto_top_up_bundle_id === 'string');
  assert.ok(Array.isArray(plan.linked_meters), 'linked_meters is an array');
  for (const m of plan.linked_meters) assert.deepEqual(Object.keys(m).sort(), ['meter_id', 'name']);
  assert.ok(Array.isArray(plan.credit_bundles), 'credit_bundles is an array');
  for (const b of plan.credit_bundles) {
    assert.match(b.credit_bundle_id, /^bnd_/);
    assert.equal(typeof b.name, 'string');
    assert.match(b.cost, MONEY, 'bundle cost');
    assert.match(b.credit_amount, MONEY, 'bundle credit_amount');
  }
  assertTimestamp(plan.created_at, 'created_at');
}

function assertSubscription(subscription) {
  assert.match(subscription.subscription_id, /^sub_/);
  assert.equal(typeof subscription.plan_id, 'string');
  assert.ok(['active', 'cancelled'].includes(subscription.status), `status ${subscription.status}`);
  assert.ok(subscription.auto_top_up_bundle_id === null || typeof subscription.auto_top_up_bundle_id === 'string');
  assertTimestamp(subscription.started_at, 'started_at');
  assertTimestamp(subscription.cycle_start_at, 'cycle_start_at');
  assertTimestamp(subscription.cycle_end_at, 'cycle_end_at');
  assert.ok(Date.parse(subscription.cycle_end_at) > Date.parse(subscription.cycle_start_at), 'the cycle ends after it starts');
  const { plan, credits: c } = subscription;
  assert.deepEqual(Object.keys(plan).sort(),
    ['billing_interval', 'bundle_rollover_type', 'included_credit', 'name', 'period_amount', 'rollover_type']);
  for (const field of ['total_remaining', 'cycle_remaining', 'bundle_remaining']) assert.match(c[field], MONEY, `credits.${field}`);
  assert.ok(subscription.pending_change === null || typeof subscription.pending_change === 'object');
}

describe('plans and credit bundles', () => {
  test('createPlan with meter_ids and credit_bundles answers a RestPlan with linked_meters and bundle ids', limits, async () => {
    const meter = await requestsMeter();
    const plan = await createPlan({ name: 'Compat starter' });
    assertPlan(plan);
    assert.equal(plan.name, 'Compat starter');
    assert.equal(plan.period_amount, '9.9900000000');
    assert.equal(plan.included_credit, '2.0000000000');
    assert.equal(plan.billing_interval, 'month');
    assert.equal(plan.rollover_type, 'none');
    assert.equal(plan.bundle_rollover_type, 'full');
    assert.equal(plan.default_auto_top_up_bundle_id, null);
    assert.deepEqual(plan.linked_meters, [{ meter_id: meter.meter_id, name: meter.name }]);
    assert.equal(plan.credit_bundles.length, 1);
    assert.deepEqual({ ...plan.credit_bundles[0], credit_bundle_id: undefined },
      { credit_bundle_id: undefined, name: 'Small pack', cost: '4.9900000000', credit_amount: '1.5000000000' });
  });

  test('default_auto_top_up_bundle_index names the bundle at that index by id', limits, async () => {
    const plan = await createPlan({
      credit_bundles: [{ name: 'A', cost: '1', credit_amount: '1' }, { name: 'B', cost: '2', credit_amount: '2.5' }],
      default_auto_top_up_bundle_index: 1,
    });
    assert.equal(plan.default_auto_top_up_bundle_id, plan.credit_bundles.find((b) => b.name === 'B').credit_bundle_id);
  });

  test('listPlans and retrievePlan answer the plan as it was created', limits, async () => {
    const plan = await createPlan();
    assert.deepEqual(await lava.subscriptions.retrievePlan(plan.plan_id), plan);
    const { items } = await listAll((p) => lava.subscriptions.listPlans(p), { limit: 50 });
    items.forEach(assertPlan);
    assert.deepEqual(items.find((p) => p.plan_id === plan.plan_id), plan);
  });

  test('updatePlan renames and adds a bundle, keeping the rest of the plan', limits, async () => {
    const plan = await createPlan();
    const updated = await lava.subscriptions.updatePlan(plan.plan_id, {
      name: 'Compat renamed',
      credit_bundles: [{ name: 'Large pack', cost: '19.99', credit_amount: '7.25' }],
    });
    assertPlan(updated);
    assert.equal(updated.name, 'Compat renamed');
    assert.equal(updated.credit_bundles.length, 2, 'the new bundle is added beside the old one');
    assert.deepEqual(updated.credit_bundles[0], plan.credit_bundles[0], 'the existing bundle is untouched');
    const added = updated.credit_bundles[1];
    assert.notEqual(added.credit_bundle_id, plan.credit_bundles[0].credit_bundle_id);
    assert.deepEqual({ ...added, credit_bundle_id: undefined },
      { credit_bundle_id: undefined, name: 'Large pack', cost: '19.9900000000', credit_amount: '7.2500000000' });
    const { name: _a, credit_bundles: _b, ...rest } = updated;
    const { name: _c, credit_bundles: _d, ...before } = plan;
    assert.deepEqual(rest, before, 'nothing else changed');
    assert.deepEqual(await lava.subscriptions.retrievePlan(plan.plan_id), updated);
  });

  test('creditBundles.list({plan_id}) and retrieve answer RestCreditBundles of that plan', limits, async () => {
    const plan = await createPlan({
      credit_bundles: [{ name: 'One', cost: '1', credit_amount: '1.1' }, { name: 'Two', cost: '2', credit_amount: '2.2' }],
    });
    await createPlan(); // another plan's bundle must not show up
    const { items } = await listAll((p) => lava.creditBundles.list(p), { plan_id: plan.plan_id, limit: 1 });
    assert.deepEqual(items.map((b) => b.credit_bundle_id).sort(), plan.credit_bundles.map((b) => b.credit_bundle_id).sort());
    for (const bundle of items) {
      assert.deepEqual(Object.keys(bundle).sort(), ['cost', 'created_at', 'credit_amount', 'credit_bundle_id', 'name', 'plan_id']);
      assert.equal(bundle.plan_id, plan.plan_id);
      assertTimestamp(bundle.created_at, 'created_at');
      const { plan_id: _p, created_at: _c, ...inPlan } = bundle;
      assert.deepEqual(inPlan, plan.credit_bundles.find((b) => b.credit_bundle_id === bundle.credit_bundle_id));
      assert.deepEqual(await lava.creditBundles.retrieve(bundle.credit_bundle_id), bundle);
    }
  });
});

// One customer's cycle, step by step: each test needs the state the one before it left (node runs them in order).
describe('subscription credits: cycle, then bundle, then overage', () => {
  const state = {};
  const expectCredits = (total, cycle, bundle) => expectCreditsOf(state.customer, total, cycle, bundle);

  test('subscribing answers {subscription} and grants the included credit as cycle credit', limits, async () => {
    state.plan = await createPlan();
    state.customer = await newCustomer();
    const response = await lava.subscriptions.create({ customer_id: state.customer.customer_id, plan_id: state.plan.plan_id });
    assert.deepEqual(Object.keys(response), ['subscription']);
    const { subscription } = response;
    assertSubscription(subscription);
    assert.equal(subscription.plan_id, state.plan.plan_id);
    assert.equal(subscription.status, 'active');
    assert.equal(subscription.auto_top_up_bundle_id, null, 'the plan has no default top-up bundle');
    assert.equal(subscription.cancelled_at, null);
    assert.equal(subscription.pending_change, null);
    assert.deepEqual(subscription.plan, {
      name: state.plan.name, period_amount: '9.9900000000', included_credit: '2.0000000000', billing_interval: 'month',
      rollover_type: 'none', bundle_rollover_type: 'full',
    });
    assert.deepEqual(subscription.credits,
      { total_remaining: '2.0000000000', cycle_remaining: '2.0000000000', bundle_remaining: '0.0000000000' });
    state.subscription = subscription;

    const { subscription: current } = await lava.customers.getSubscription(state.customer.customer_id);
    assert.equal(current.subscription_id, subscription.subscription_id);
    await expectCredits('2.0000000000', '2.0000000000', '0.0000000000');
  });

  test('a second subscription for the same customer is a 409', limits, async () => {
    const conflict = await apiError(() => subscribe(state.customer, state.plan));
    assert.equal(conflict.status, 409, conflict.message);
    assert.equal(conflict.error.code, 'subscription_exists');
  });

  test('usage on a linked meter draws cycle credits first', limits, async () => {
    await useOnce(state.customer);
    await expectCredits('1.2222222223', '1.2222222223', '0.0000000000');
  });

  test('a bundle purchase adds bundle credits; replaying its Idempotency-Key adds nothing', limits, async () => {
    const bundle = state.plan.credit_bundles[0];
    const key = unique('purchase');
    const bought = await purchase(bundle.credit_bundle_id, state.customer.customer_id, key);
    assert.equal(bought.status, 201, JSON.stringify(bought.body));
    assert.equal(bought.body.credit_bundle_id, bundle.credit_bundle_id);
    assert.equal(bought.body.customer_id, state.customer.customer_id);
    assert.equal(bought.body.cost, '4.9900000000');
    assert.equal(bought.body.credit_amount, '1.5000000000');
    assert.equal(bought.body.bundle_remaining, '1.5000000000');
    await expectCredits('2.7222222223', '1.2222222223', '1.5000000000');

    const replay = await purchase(bundle.credit_bundle_id, state.customer.customer_id, key);
    assert.equal(replay.status, 201);
    assert.equal(replay.replayed, 'true');
    assert.deepEqual(replay.body, bought.body, 'the replay answers the first purchase');
    await expectCredits('2.7222222223', '1.2222222223', '1.5000000000');
  });

  test('once the cycle credit runs out, usage draws bundle credits', limits, async () => {
    await useOnce(state.customer);
    await expectCredits('1.9444444446', '0.4444444446', '1.5000000000');
    // 0.4444444446 of this charge comes from the cycle, the other 0.3333333331 from the bundle
    await useOnce(state.customer);
    await expectCredits('1.1666666669', '0.0000000000', '1.1666666669');
    await useOnce(state.customer);
    await expectCredits('0.3888888892', '0.0000000000', '0.3888888892');
  });

  test('once cycle and bundle credits are gone, usage goes to the receivable as overage', limits, async () => {
    await useOnce(state.customer);
    await expectCredits('0.0000000000', '0.0000000000', '0.0000000000');
    const owed = await balance(state.customer.customer_id);
    assert.equal(owed.receivable, '0.3888888885', 'the part of the charge the bundle could not cover');
    assert.equal(owed.cycle_remaining, '0.0000000000');
    assert.equal(owed.bundle_remaining, '0.0000000000');

    await useOnce(state.customer);
    await expectCredits('0.0000000000', '0.0000000000', '0.0000000000');
    assert.equal((await balance(state.customer.customer_id)).receivable, '1.1666666662');
  });
});

describe('subscriptions: list, auto top-up, cancel, plan deletion', () => {
  test('subscriptions.list({status: active, customer_id}) answers exactly that customer\'s subscription', limits, async () => {
    const plan = await createPlan();
    const [customer, other] = [await newCustomer(), await newCustomer()];
    const subscription = await subscribe(customer, plan);
    await subscribe(other, plan);

    const { items } = await listAll((p) => lava.subscriptions.list(p),
      { status: 'active', customer_id: customer.customer_id, limit: 10 });
    assert.deepEqual(items.map((s) => s.subscription_id), [subscription.subscription_id]);
    const [listed] = items;
    assertSubscription(listed);
    assert.equal(listed.customer_id, customer.customer_id);
    assert.equal(typeof listed.customer.phone, 'string', 'customer.phone is a string');
    assert.equal(listed.customer.email, 'ada@example.com');
    const { customer_id: _i, customer: _c, ...base } = listed;
    const { customer_id: _j, customer: _d, ...created } = subscription;
    assert.deepEqual(base, created);

    const cancelled = await listAll((p) => lava.subscriptions.list(p),
      { status: 'cancelled', customer_id: customer.customer_id, limit: 10 });
    assert.deepEqual(cancelled.items, []);
  });

  test('an auto top-up bundle set with subscriptions.update buys a pack when a charge would go short', limits, async () => {
    const plan = await createPlan();
    const customer = await newCustomer();
    const subscription = await subscribe(customer, plan);
    const pack = plan.credit_bundles[0];

    assert.deepEqual(await lava.subscriptions.update(subscription.subscription_id, { auto_top_up_bundle_id: pack.credit_bundle_id }),
      { success: true });
    const { subscription: current } = await lava.customers.getSubscription(customer.customer_id);
    assert.equal(current.auto_top_up_bundle_id, pack.credit_bundle_id);

    await useOnce(customer);
    await useOnce(customer);
    await expectCreditsOf(customer, '0.4444444446', '0.4444444446', '0.0000000000');
    // short by 0.3333333331: one pack (1.5 credits for 4.99, owed) covers it
    await useOnce(customer);
    await expectCreditsOf(customer, '1.1666666669', '0.0000000000', '1.1666666669');
    assert.equal((await balance(customer.customer_id)).receivable, '4.9900000000', 'the customer owes the pack\'s price');
  });

  test('usage on a meter the plan does not link bills straight to the receivable, leaving the credits', limits, async () => {
    const plan = await createPlan();
    const customer = await newCustomer();
    await subscribe(customer, plan);
    const unlinked = await lava.meters.create({
      name: 'Compat unlinked', meter_slug: unique('compat-sub-unl'), rate_type: 'fixed', tier_type: 'requests',
      tiers: [{ start: '0', rate: '0.25' }],
    });
    await lava.requests.create({ request_id: unique('req'), customer_id: customer.customer_id, meter_slug: unlinked.meter_slug });
    await expectCreditsOf(customer, '2.0000000000', '2.0000000000', '0.0000000000');
    assert.equal((await balance(customer.customer_id)).receivable, '0.2500000000');
  });

  test('cancel answers {success: true} and leaves the subscription active with a pending cancellation', limits, async () => {
    const plan = await createPlan();
    const customer = await newCustomer();
    const subscription = await subscribe(customer, plan);

    assert.deepEqual(await lava.subscriptions.cancel(subscription.subscription_id), { success: true });
    const { subscription: current } = await lava.customers.getSubscription(customer.customer_id);
    assert.equal(current.subscription_id, subscription.subscription_id);
    assert.equal(current.status, 'active', 'it runs to the end of the cycle');
    assert.equal(current.pending_change.type, 'cancellation');
    assert.equal(Date.parse(current.pending_change.effective_at), Date.parse(current.cycle_end_at), 'effective at the cycle end');
    assert.deepEqual(current.credits, subscription.credits, 'the cycle\'s credit stays usable');

    // the subscription is still active, so the plan cannot go
    const inUse = await apiError(() => lava.subscriptions.deletePlan(plan.plan_id));
    assert.equal(inUse.status, 409, inUse.message);
    assert.match(inUse.message, /409/);
    assert.equal(inUse.error.code, 'plan_in_use');
    assert.equal((await lava.subscriptions.retrievePlan(plan.plan_id)).plan_id, plan.plan_id, 'the plan is still there');
  });

  test('deletePlan of a plan nobody subscribes to answers {id, deleted: true}', limits, async () => {
    const plan = await createPlan();
    assert.deepEqual(await lava.subscriptions.deletePlan(plan.plan_id), { id: plan.plan_id, deleted: true });
    const gone = await apiError(() => lava.subscriptions.retrievePlan(plan.plan_id));
    assert.equal(gone.status, 404, gone.message);
  });
});
