// The `openai` npm package, unchanged, with a spend key as its API key and this service as its base URL: a chat
// completes streamed and not against the fake provider compat/run.sh starts (its model table sends gpt- models
// there), and what the provider reported shows in the key's current_spend. Each call carries an x-compat-call header
// of its own, which the service passes on, so a test reads back exactly its calls at the provider.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { baseUrl, client, limits, unique } from './support.mjs';
import { USAGE } from './fake-provider.mjs';

const providerUrl = process.env.LAVA_FAKE_PROVIDER_URL;
if (!providerUrl) throw new Error('LAVA_FAKE_PROVIDER_URL must be set: run the suite with compat/run.sh');
// compat/run.sh configures Forward__ManagedKeys__127.0.0.1 with this key.
const MANAGED_KEY = 'sk-managed';

const lava = client();

// gpt-4o-mini per 1M tokens: 0.15 input, 0.075 cached input, 0.60 output; USAGE has 1200 input of which 200 cached
// and 345 output: (1000 x 0.15 + 200 x 0.075 + 345 x 0.60) / 1M.
const ONE_CALL = '0.0003720000';

async function callsTagged(tag) {
  const response = await fetch(`${providerUrl}/calls?tag=${encodeURIComponent(tag)}`);
  assert.equal(response.status, 200);
  return (await response.json()).calls;
}

/**
 * The key as read once its call is captured: the service captures after the answer's last byte went out, so the
 * capture may land a moment after the client has the whole answer.
 */
async function keyOnceCaptured(id) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const read = await lava.spendKeys.retrieve(id);
    if (read.total_spend !== '0.0000000000' || Date.now() > deadline) return read;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A new spend key and an OpenAI client that uses it, as an AI tool would be configured. */
async function openAiWithSpendKey(tag) {
  const key = await lava.spendKeys.create({ name: unique('compat-openai'), spend_limit: { amount: '1', cycle: 'daily' } });
  const openai = new OpenAI({
    apiKey: key.key,
    baseURL: baseUrl.replace(/\/$/, ''),
    defaultHeaders: { 'x-compat-call': tag },
    maxRetries: 0,
  });
  return { key, openai };
}

async function assertOneCallReachedTheProviderWithTheManagedKey(tag, spendKey) {
  const calls = await callsTagged(tag);
  assert.equal(calls.length, 1, 'the provider was called once');
  assert.equal(calls[0].headers.authorization, `Bearer ${MANAGED_KEY}`, 'the provider sees the merchant\'s managed key');
  assert.ok(!JSON.stringify(calls[0].headers).includes(spendKey), 'the spend key never reaches the provider');
  return calls[0];
}

describe('the openai package with a spend key', () => {
  test('a chat completes and its cost shows in the key\'s current_spend', limits, async () => {
    const tag = unique('openai-chat');
    const { key, openai } = await openAiWithSpendKey(tag);

    const completion = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello.' }],
    });

    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices[0].message.content, 'Hello from the fake provider.');
    assert.deepEqual(completion.usage, USAGE);
    await assertOneCallReachedTheProviderWithTheManagedKey(tag, key.key);
    const read = await keyOnceCaptured(key.spend_key_id);
    assert.equal(read.current_spend, ONE_CALL);
    assert.equal(read.current_requests, 1);
  });

  test('a streamed chat completes and its cost shows in the key\'s current_spend', limits, async () => {
    const tag = unique('openai-stream');
    const { key, openai } = await openAiWithSpendKey(tag);

    // The client does not ask for usage: the service does, so the call is billed what the provider reported.
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello.' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';

    assert.equal(text, 'Hello from the fake provider.');
    const call = await assertOneCallReachedTheProviderWithTheManagedKey(tag, key.key);
    assert.equal(call.body.stream_options?.include_usage, true);
    const read = await keyOnceCaptured(key.spend_key_id);
    assert.equal(read.current_spend, ONE_CALL);
    assert.equal(read.total_spend, ONE_CALL);
  });

  test('a revoked key is refused before the provider is reached', limits, async () => {
    const tag = unique('openai-revoked');
    const { key, openai } = await openAiWithSpendKey(tag);
    await lava.spendKeys.revoke(key.spend_key_id);

    await assert.rejects(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello.' }] }),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401,
    );
    assert.equal((await callsTagged(tag)).length, 0);
  });
});
