// lava.customers: create, list, retrieve, update, getSubscription, delete.
// The SDK sends flat email/phone/name; RestCustomer answers them nested in contact {phone, email, first_name,
// last_name}, all strings, with the short subscription (null without one).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiError, assertTimestamp, client, limits, listAll, unique } from './support.mjs';

const lava = client();

function createCustomer(overrides = {}) {
  const reference = unique('compat-cus');
  return lava.customers.create({
    reference_id: reference,
    email: `${reference}@example.com`,
    phone: '+15555550100',
    name: 'Ada Lovelace',
    metadata: { team: 'compat', seats: 3 },
    ...overrides,
  });
}

function assertCustomer(customer) {
  assert.match(customer.customer_id, /^cus_/);
  assert.ok(customer.reference_id === null || typeof customer.reference_id === 'string', 'reference_id is a string or null');
  assert.equal(typeof customer.contact, 'object');
  assert.notEqual(customer.contact, null, 'contact is an object');
  for (const field of ['phone', 'email', 'first_name', 'last_name']) {
    assert.equal(typeof customer.contact[field], 'string', `contact.${field} is a string`);
  }
  assert.ok('subscription' in customer, 'subscription is present (null without one)');
  assert.ok('metadata' in customer, 'metadata is present (object or null)');
  assertTimestamp(customer.created_at, 'created_at');
}

const fullName = (contact) => [contact.first_name, contact.last_name].filter(Boolean).join(' ');

describe('customers', () => {
  test('creating a customer answers a RestCustomer with its contact nested', limits, async () => {
    const customer = await createCustomer();
    assertCustomer(customer);
    assert.match(customer.reference_id, /^compat-cus-/);
    assert.equal(customer.contact.email, `${customer.reference_id}@example.com`);
    assert.equal(customer.contact.phone, '+15555550100');
    assert.equal(fullName(customer.contact), 'Ada Lovelace');
    assert.equal(customer.subscription, null);
    assert.deepEqual(customer.metadata, { team: 'compat', seats: 3 });
  });

  test('a customer created with no fields still has a contact of strings', limits, async () => {
    const customer = await lava.customers.create({});
    assertCustomer(customer);
    assert.equal(customer.subscription, null);
  });

  test('listing with limit 1 pages through every customer by next_cursor', limits, async () => {
    const made = [await createCustomer(), await createCustomer()];
    const { items, pages } = await listAll((p) => lava.customers.list(p), { limit: 1 });
    const ids = items.map((c) => c.customer_id);
    assert.equal(new Set(ids).size, ids.length, 'no customer appears on two pages');
    for (const customer of made) {
      const listed = items.find((c) => c.customer_id === customer.customer_id);
      assert.ok(listed, `${customer.customer_id} is on some page`);
      assert.deepEqual(listed, customer, 'a listed customer equals the created one');
    }
    assert.ok(pages.slice(0, -1).every((p) => p.data.length === 1), 'every page but the last is full');
    const firstPage = await lava.customers.list();
    assert.ok(firstPage.data.length >= 2 && firstPage.data.length <= 10, 'the default page holds up to 10');
  });

  test('a customer is retrieved by id as it was created', limits, async () => {
    const customer = await createCustomer();
    assert.deepEqual(await lava.customers.retrieve(customer.customer_id), customer);
  });

  test('updating a customer changes only the fields sent', limits, async () => {
    const customer = await createCustomer();
    const email = `${unique('updated')}@example.com`;
    const updated = await lava.customers.update(customer.customer_id, { email, metadata: { team: 'gold', seats: 4 } });
    assertCustomer(updated);
    assert.equal(updated.customer_id, customer.customer_id);
    assert.equal(updated.contact.email, email);
    assert.equal(updated.contact.phone, customer.contact.phone, 'phone was not sent and is kept');
    assert.equal(fullName(updated.contact), 'Ada Lovelace');
    assert.equal(updated.reference_id, customer.reference_id);
    assert.deepEqual(updated.metadata, { team: 'gold', seats: 4 });
    assert.equal(updated.created_at, customer.created_at);
    assert.deepEqual(await lava.customers.retrieve(customer.customer_id), updated);
  });

  test('a customer without a subscription answers {subscription: null}', limits, async () => {
    const customer = await createCustomer();
    assert.deepEqual(await lava.customers.getSubscription(customer.customer_id), { subscription: null });
  });

  test('deleting a customer answers {success: true} and it is gone', limits, async () => {
    const customer = await createCustomer();
    assert.deepEqual(await lava.customers.delete(customer.customer_id), { success: true });
    const gone = await apiError(() => lava.customers.retrieve(customer.customer_id));
    assert.equal(gone.status, 404);
    assert.equal(gone.error.code, 'not_found');
  });
});
