// lava.gateway(url, {...}) through the SDK in the four request modes of docs/design.md, against the fake provider
// compat/run.sh starts (compat/fake-provider.mjs: OpenAI chat completions with a fixed usage). Each call carries an
// x-compat-call header of its own, which the gateway passes on, so a test reads back exactly its calls and the
// headers they arrived with; the provider's total call count shows a refused call never reached it.
// gateway() answers only the parsed body, not x-lava-request-id: a test finds its request by listing its own meter.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiError, client, limits, secretKey, unique } from './support.mjs';
import { USAGE } from './fake-provider.mjs';

const providerUrl = process.env.LAVA_FAKE_PROVIDER_URL;
if (!providerUrl) throw new Error('LAVA_FAKE_PROVIDER_URL must be set: run the suite with compat/run.sh');
const completions = `${providerUrl}/v1/chat/completions`;
// compat/run.sh configures Forward__ManagedKeys__127.0.0.1 with this key.
const MANAGED_KEY = 'sk-managed';

const lava = client();

/** The provider's record: every call it received (total) and this tag's calls with their headers. */
async function providerCalls(tag) {
  const response = await fetch(`${providerUrl}/calls?tag=${encodeURIComponent(tag)}`);
  assert.equal(response.status, 200);
  return response.json();
}

/** One chat completion through the gateway, tagged so the provider's record of it can be found. */
function chat(tag, options = {}, headers = {}) {
  return lava.gateway(completions, {
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 500 },
    headers: { 'x-compat-call': tag, ...headers },
    ...options,
  });
}

function assertCompletion(body) {
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.choices[0].message.content, 'Hello from the fake provider.');
  assert.deepEqual(body.usage, USAGE, 'the provider\'s usage comes back untouched');
}

/** Asserts the provider got exactly one call with this tag and returns its headers. */
async function onlyCallOf(tag) {
  const { calls } = await providerCalls(tag);
  assert.equal(calls.length, 1, 'the provider was called once');
  const [call] = calls;
  assert.equal(call.body.model, 'gpt-4o-mini', 'the body reached the provider');
  // The forward token carries the merchant's secret key: it must stop at the gateway.
  assert.ok(!JSON.stringify(call.headers).includes(secretKey), 'the Lava secret key never reaches the provider');
  return call.headers;
}

/**
 * The requests on a meter, once there are `count`. The gateway bills after the provider's answer has gone out, so
 * the row may land a moment after gateway() resolved.
 */
async function requestsOn(meter, count = 1) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const page = await lava.requests.list({ meter_id: meter.meter_id, limit: 10 });
    if (page.data.length >= count || Date.now() > deadline) {
      assert.equal(page.data.length, count, `${count} request(s) on meter ${meter.meter_slug}`);
      return page.data;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// 3 credits per 1M tokens: 1200 prompt + 345 completion tokens charge exactly 0.004635.
const RATE = '3';
const CHARGE = '0.0046350000';
const newMeter = () => lava.meters.create({
  name: 'Compat gateway', meter_slug: unique('compat-gw-mtr'), rate_type: 'fixed', tier_type: 'tokens_1m',
  tiers: [{ start: '0', rate: RATE }],
});

const newCustomer = () => lava.customers.create({ reference_id: unique('compat-gw-cus'), name: 'Katherine Johnson' });

/** A customer subscribed to a plan linking `meter`, granted `credit` as cycle credit. */
async function subscribedCustomer(meter, credit) {
  const plan = await lava.subscriptions.createPlan({
    name: unique('Compat gateway plan'), period_amount: '10', included_credit: credit, billing_interval: 'month',
    rollover_type: 'none', bundle_rollover_type: 'full', meter_ids: [meter.meter_id], credit_bundles: [],
    default_auto_top_up_bundle_index: null,
  });
  const customer = await newCustomer();
  await lava.subscriptions.create({ customer_id: customer.customer_id, plan_id: plan.plan_id });
  return customer;
}

async function creditsOf(customer) {
  const { subscription } = await lava.customers.getSubscription(customer.customer_id);
  assert.ok(subscription, 'the customer has an active subscription');
  return subscription.credits;
}

describe('gateway', () => {
  test('gateway mode (no customer, no meter) answers the provider\'s body; the provider gets the managed key', limits, async () => {
    const tag = unique('call');
    assertCompletion(await chat(tag));
    const headers = await onlyCallOf(tag);
    assert.equal(headers.authorization, `Bearer ${MANAGED_KEY}`);
  });

  test('meter-only ({meter_slug}) records the provider\'s usage on the meter, charging no customer', limits, async () => {
    const meter = await newMeter();
    const tag = unique('call');
    assertCompletion(await chat(tag, { meter_slug: meter.meter_slug }, { 'x-lava-metadata': JSON.stringify({ feature: 'compat' }) }));
    assert.equal((await onlyCallOf(tag)).authorization, `Bearer ${MANAGED_KEY}`);

    const [listed] = await requestsOn(meter);
    const request = await lava.requests.retrieve(listed.request_id);
    assert.deepEqual(request, listed, 'retrieve answers the listed request');
    assert.equal(request.mode, 'meter_only');
    assert.equal(request.status, 'completed');
    assert.equal(request.meter_id, meter.meter_id);
    assert.ok(request.customer_id == null, `no customer: ${request.customer_id}`);
    assert.ok(request.customer_balance == null, 'no customer balance moved');
    // prompt_tokens already counts the cached tokens, completion_tokens the reasoning ones: neither is added twice.
    assert.equal(request.model_usage.input_tokens, USAGE.prompt_tokens);
    assert.equal(request.model_usage.output_tokens, USAGE.completion_tokens);
    assert.equal(request.model_usage.total_tokens, USAGE.prompt_tokens + USAGE.completion_tokens);
    // gpt-4o-mini per 1M: 0.15 input, 0.075 cached input, 0.60 output → (1000·0.15 + 200·0.075 + 345·0.60) / 1M
    assert.equal(request.cost, '0.0003720000', 'the provider cost, cached tokens at the cached rate');
    assert.deepEqual(request.metadata, { feature: 'compat' }, 'x-lava-metadata is stored with the request');
  });

  test('customer billing ({customer_id, meter_slug}) charges the usage and reduces the credits exactly', limits, async () => {
    const meter = await newMeter();
    const customer = await subscribedCustomer(meter, '2');
    assert.deepEqual(await creditsOf(customer),
      { total_remaining: '2.0000000000', cycle_remaining: '2.0000000000', bundle_remaining: '0.0000000000' });

    const tag = unique('call');
    assertCompletion(await chat(tag, { customer_id: customer.customer_id, meter_slug: meter.meter_slug }));
    assert.equal((await onlyCallOf(tag)).authorization, `Bearer ${MANAGED_KEY}`);

    const [request] = await requestsOn(meter);
    assert.equal(request.mode, 'customer');
    assert.equal(request.customer_id, customer.customer_id);
    assert.equal(request.model_usage.input_tokens, USAGE.prompt_tokens);
    assert.equal(request.model_usage.output_tokens, USAGE.completion_tokens);
    assert.equal(request.charge.amount, CHARGE);
    // The hold taken before the call was captured by this charge: nothing else stays reserved.
    assert.deepEqual(await creditsOf(customer),
      { total_remaining: '1.9953650000', cycle_remaining: '1.9953650000', bundle_remaining: '0.0000000000' });
  });

  test('a customer without credits gets a 402 and the provider is never called', limits, async () => {
    const meter = await newMeter();
    const customer = await newCustomer();
    const tag = unique('call');
    const before = (await providerCalls(tag)).total;

    const failure = await apiError(() => chat(tag, { customer_id: customer.customer_id, meter_slug: meter.meter_slug }));
    assert.equal(failure.status, 402, failure.message);
    assert.match(failure.message, /402/);
    assert.equal(failure.error.code, 'insufficient_credits');

    const after = await providerCalls(tag);
    assert.equal(after.calls.length, 0, 'no call of this test reached the provider');
    assert.equal(after.total, before, 'the provider\'s call count did not move');
    assert.equal((await lava.requests.list({ meter_id: meter.meter_id })).data.length, 0, 'nothing was recorded');
  });

  test('billing disabled on a meter of the customer\'s plan records the usage at charge 0, leaving the credits', limits, async () => {
    const meter = await newMeter();
    // No credit at all: a billing-disabled call neither checks nor draws the balance.
    const customer = await subscribedCustomer(meter, '0');

    const tag = unique('call');
    assertCompletion(await chat(tag, { customer_id: customer.customer_id, meter_slug: meter.meter_slug, disable_billing: true }));
    await onlyCallOf(tag);

    const [request] = await requestsOn(meter);
    assert.equal(request.mode, 'billing_disabled');
    assert.equal(request.customer_id, customer.customer_id, 'the customer is still tracked');
    assert.equal(request.model_usage.input_tokens, USAGE.prompt_tokens);
    assert.equal(request.model_usage.output_tokens, USAGE.completion_tokens);
    assert.equal(request.charge.amount, '0.0000000000');
    assert.deepEqual(await creditsOf(customer),
      { total_remaining: '0.0000000000', cycle_remaining: '0.0000000000', bundle_remaining: '0.0000000000' });
  });

  test('billing disabled on a meter not on the customer\'s plan is a 403 and the provider is never called', limits, async () => {
    const [planMeter, otherMeter] = [await newMeter(), await newMeter()];
    const customer = await subscribedCustomer(planMeter, '2');
    const tag = unique('call');
    const before = (await providerCalls(tag)).total;

    const failure = await apiError(() =>
      chat(tag, { customer_id: customer.customer_id, meter_slug: otherMeter.meter_slug, disable_billing: true }));
    assert.equal(failure.status, 403, failure.message);
    assert.match(failure.message, /403/);
    assert.equal(failure.error.code, 'meter_not_on_plan');

    const after = await providerCalls(tag);
    assert.equal(after.calls.length, 0, 'no call of this test reached the provider');
    assert.equal(after.total, before, 'the provider\'s call count did not move');
    assert.equal((await lava.requests.list({ meter_id: otherMeter.meter_id })).data.length, 0, 'nothing was recorded');
  });

  test('BYOK (provider_key) reaches the provider instead of the managed key and is stored nowhere', limits, async () => {
    const meter = await newMeter();
    const byok = 'sk-byok';
    const tag = unique('call');
    assertCompletion(await chat(tag, { meter_slug: meter.meter_slug, provider_key: byok }));
    const headers = await onlyCallOf(tag);
    assert.equal(headers.authorization, `Bearer ${byok}`);
    assert.ok(!JSON.stringify(headers).includes(MANAGED_KEY), 'the managed key is not sent beside it');

    const [listed] = await requestsOn(meter);
    const page = await lava.requests.list({ meter_id: meter.meter_id });
    assert.ok(!JSON.stringify(page).includes(byok), `the key is not in requests.list: ${JSON.stringify(page)}`);
    assert.ok(!JSON.stringify(await lava.requests.retrieve(listed.request_id)).includes(byok), 'nor in requests.retrieve');
  });
});
