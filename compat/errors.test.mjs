// What the SDK makes of our problem responses: it throws
//   Error("Lava API Error: <status> <reason> - " + JSON.stringify(body.error))
// so every error must carry the `error` member {code, message} (docs/design.md, "Wire conventions").
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiError, client, limits } from './support.mjs';

const lava = client();

function assertErrorMember(failure, status, code) {
  assert.equal(failure.status, status, failure.message);
  assert.equal(failure.error.code, code, failure.message);
  assert.equal(typeof failure.error.message, 'string');
  assert.ok(failure.error.message.length > 0, 'the error says what went wrong');
}

describe('errors', () => {
  test('an unknown secret key id is a 404 whose message carries the not_found error', limits, async () => {
    const failure = await apiError(() => lava.secretKeys.delete('key_doesnotexist'));
    assert.match(failure.message, /^Lava API Error: 404 Not Found - \{/);
    assert.match(failure.message, /"code":"not_found"/);
    assertErrorMember(failure, 404, 'not_found');
  });

  test('an unknown customer id is a 404 not_found', limits, async () => {
    assertErrorMember(await apiError(() => lava.customers.retrieve('cus_doesnotexist')), 404, 'not_found');
  });

  test('an unknown meter id is a 404 not_found', limits, async () => {
    assertErrorMember(await apiError(() => lava.meters.retrieve('mtr_doesnotexist')), 404, 'not_found');
  });

  test('an unknown request id is a 404 not_found', limits, async () => {
    assertErrorMember(await apiError(() => lava.requests.retrieve('no-such-request')), 404, 'not_found');
  });

  test('a key the service never issued is a 401', limits, async () => {
    const failure = await apiError(() => client('aks_test_notarealkey0000000000000000').secretKeys.list());
    assert.match(failure.message, /^Lava API Error: 401 Unauthorized - /);
    assertErrorMember(failure, 401, 'unauthorized');
  });

  test('invalid input is a 400 naming the problem', limits, async () => {
    const failure = await apiError(() => lava.secretKeys.create({ name: '' }));
    assert.match(failure.message, /^Lava API Error: 400 Bad Request - /);
    assertErrorMember(failure, 400, 'validation_failed');
  });
});
