// Shared helpers for the SDK compatibility tests (not a test file: node --test only runs *.test.mjs here).
// compat/run.sh sets LAVA_BASE_URL (with its trailing slash: the SDK resolves paths relative to it) and
// LAVA_SECRET_KEY, the key of a merchant created for the run.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Lava } from '@lavapayments/nodejs';

export const baseUrl = process.env.LAVA_BASE_URL;
export const secretKey = process.env.LAVA_SECRET_KEY;
if (!baseUrl || !secretKey) {
  throw new Error('LAVA_BASE_URL and LAVA_SECRET_KEY must be set: run the suite with compat/run.sh');
}

/** A client as a merchant would build one. */
export const client = (key = secretKey) => new Lava(key, { baseUrl });

/** The SDK has no timeout of its own: bound every test so a hung route fails instead of stalling the run. */
export const limits = { timeout: 30_000 };

const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
let counter = 0;
/** A name no other test or earlier run used (lowercase, valid as a meter slug). */
export const unique = (prefix) => `${prefix}-${runId}-${++counter}`;

/** Money on the wire: an exact decimal string with 10 places (docs/design.md, "Wire conventions"). */
export const MONEY = /^-?\d+\.\d{10}$/;

export function assertTimestamp(value, what = 'timestamp') {
  assert.equal(typeof value, 'string', `${what} is a string`);
  assert.ok(!Number.isNaN(Date.parse(value)), `${what} parses as a date: ${value}`);
}

/**
 * Runs an SDK call that must fail and returns what the SDK exposes of the error: it throws a plain Error whose
 * message is `Lava API Error: <status> <reason> - <JSON of the body's error member>`.
 */
export async function apiError(call) {
  let error;
  try {
    const result = await call();
    assert.fail(`expected an API error, got ${JSON.stringify(result)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    error = e;
  }
  const match = /^Lava API Error: (\d{3}) ([^-]*) - (.*)$/s.exec(error.message);
  assert.ok(match, `an SDK API error, got: ${error.message}`);
  let body;
  try {
    body = JSON.parse(match[3]);
  } catch {
    assert.fail(`the error member is a JSON object, got: ${match[3]}`);
  }
  return { status: Number(match[1]), reason: match[2].trim(), error: body, message: error.message };
}

/** Follows next_cursor page by page; checks the list envelope on every page. */
export async function listAll(list, params = {}, maxPages = 500) {
  const items = [];
  const pages = [];
  let cursor;
  for (let i = 0; i < maxPages; i++) {
    const page = await list({ ...params, cursor });
    assert.ok(Array.isArray(page.data), 'data is an array');
    assert.equal(typeof page.has_more, 'boolean', 'has_more is a boolean');
    if (params.limit) assert.ok(page.data.length <= params.limit, `a page holds at most limit=${params.limit} items`);
    pages.push(page);
    items.push(...page.data);
    if (!page.has_more) return { items, pages };
    assert.equal(typeof page.next_cursor, 'string', 'next_cursor is given while has_more is true');
    assert.ok(page.next_cursor.length > 0, 'next_cursor is not empty');
    assert.notEqual(page.next_cursor, cursor, 'next_cursor moves forward');
    cursor = page.next_cursor;
  }
  assert.fail(`still has_more after ${maxPages} pages`);
}

/** Memoises an async fixture so the tests of one file share it but each still reports its own failure. */
export function once(make) {
  let promise;
  return () => (promise ??= make());
}
