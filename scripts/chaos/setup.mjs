// Gives a merchant what the chaos run bills against, through the public API only (no SQL): a tokens meter with one
// flat tier (so a report's charge does not depend on the order reports land in), a plan granting plenty of cycle
// credit, and customers subscribed to it. Prints one JSON line: the ids, for the load client, fuzzer and checks.
//
//   node scripts/chaos/setup.mjs URL SECRET_KEY MERCHANT_ID CUSTOMERS [LABEL]
import { bearer, call, json } from './lib.mjs';

const [url, key, merchantId, customerCount = '8', label = 'chaos'] = process.argv.slice(2);
if (!url || !key || !merchantId) {
  process.stderr.write('usage: node scripts/chaos/setup.mjs URL SECRET_KEY MERCHANT_ID CUSTOMERS [LABEL]\n');
  process.exit(2);
}

async function post(path, body) {
  const response = await call(url, { method: 'POST', path, headers: bearer(key), body: json(body) });
  if (response.error || response.status >= 300)
    throw new Error(`POST ${path} -> ${response.status ?? response.error}: ${response.body?.toString() ?? response.detail}`);
  return JSON.parse(response.body.toString());
}

// 3 credits per 1M tokens: a report of at most 5,000 tokens costs at most 0.015, so a million credits never run out.
export const RATE = '3';
const CREDIT = '1000000';
const meter = await post('/v1/meters', {
  name: `${label} tokens`, meter_slug: `${label}-tokens`, rate_type: 'fixed', tier_type: 'tokens_1m',
  tiers: [{ start: '0', rate: RATE }],
});
const plan = await post('/v1/plans', {
  name: `${label} plan`, period_amount: CREDIT, included_credit: CREDIT, billing_interval: 'month',
  rollover_type: 'none', bundle_rollover_type: 'none', meter_ids: [meter.meter_id], credit_bundles: [],
  default_auto_top_up_bundle_index: null,
});
const customers = [];
for (let i = 0; i <= Number(customerCount); i++) {
  const customer = await post('/v1/customers', { reference_id: `${label}-${i}`, name: `${label} customer ${i}` });
  await post('/v1/subscriptions', { customer_id: customer.customer_id, plan_id: plan.plan_id });
  customers.push(customer.customer_id);
}
// The last one is kept apart for reports that are meant to be refused, so the others' money stays simple to check.
const poisonCustomer = customers.pop();
process.stdout.write(`${JSON.stringify({
  merchant_id: merchantId, key, meter_slug: meter.meter_slug, meter_id: meter.meter_id, plan_id: plan.plan_id, customers,
  poison_customer: poisonCustomer, rate: RATE,
})}\n`);
