// lava.gateway(url, { format }) through the SDK: the SDK calls /v1/rewrite/{format}/{provider URL}, and the service
// translates between the shape the client speaks (format) and the one the provider's URL speaks, against the fake
// provider compat/run.sh starts (compat/fake-provider.mjs: OpenAI chat completions and Anthropic messages).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiError, client, limits, secretKey, unique } from './support.mjs';
import { ANTHROPIC_USAGE, USAGE } from './fake-provider.mjs';

const providerUrl = process.env.LAVA_FAKE_PROVIDER_URL;
if (!providerUrl) throw new Error('LAVA_FAKE_PROVIDER_URL must be set: run the suite with compat/run.sh');

const lava = client();

async function providerCalls(tag) {
  const response = await fetch(`${providerUrl}/calls?tag=${encodeURIComponent(tag)}`);
  assert.equal(response.status, 200);
  return response.json();
}

async function onlyCallOf(tag) {
  const { calls } = await providerCalls(tag);
  assert.equal(calls.length, 1, 'the provider was called once');
  assert.ok(!JSON.stringify(calls[0].headers).includes(secretKey), 'the Lava secret key never reaches the provider');
  return calls[0];
}

// 3 credits per 1M tokens on a meter of its own per test.
const newMeter = () => lava.meters.create({
  name: 'Compat rewrite', meter_slug: unique('compat-rw-mtr'), rate_type: 'fixed', tier_type: 'tokens_1m',
  tiers: [{ start: '0', rate: '3' }],
});

async function requestOn(meter) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const page = await lava.requests.list({ meter_id: meter.meter_id, limit: 10 });
    if (page.data.length > 0 || Date.now() > deadline) {
      assert.equal(page.data.length, 1, `one request on meter ${meter.meter_slug}`);
      return page.data[0];
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('gateway with format (rewrite)', () => {
  test('format openai to Anthropic\'s Messages URL: the provider gets a Messages request, the client a chat completion', limits, async () => {
    const meter = await newMeter();
    const tag = unique('call');
    const body = await lava.gateway(`${providerUrl}/v1/messages`, {
      format: 'openai',
      meter_slug: meter.meter_slug,
      headers: { 'x-compat-call': tag },
      body: {
        model: 'claude-sonnet-4-5', max_tokens: 400,
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello.' }],
      },
    });

    assert.equal(body.object, 'chat.completion');
    assert.equal(body.choices[0].message.content, 'Hello from the fake provider.');
    assert.equal(body.choices[0].finish_reason, 'stop');
    const input = ANTHROPIC_USAGE.input_tokens + ANTHROPIC_USAGE.cache_read_input_tokens + ANTHROPIC_USAGE.cache_creation_input_tokens;
    assert.deepEqual(body.usage, {
      prompt_tokens: input, completion_tokens: ANTHROPIC_USAGE.output_tokens, total_tokens: input + ANTHROPIC_USAGE.output_tokens,
      prompt_tokens_details: { cached_tokens: ANTHROPIC_USAGE.cache_read_input_tokens },
    });

    const call = await onlyCallOf(tag);
    assert.deepEqual(call.body.system, [{ type: 'text', text: 'Be brief.' }], 'the system message became Anthropic\'s system');
    assert.equal(call.body.max_tokens, 400);
    assert.equal(call.headers['x-api-key'], 'sk-managed', 'the managed key, where Anthropic reads it');
    assert.equal(call.headers['anthropic-version'], '2023-06-01');

    const request = await requestOn(meter);
    assert.equal(request.model_usage.input_tokens, input, 'billed from Anthropic\'s own usage, each input token once');
    assert.equal(request.model_usage.output_tokens, ANTHROPIC_USAGE.output_tokens);
  });

  test('format anthropic to an OpenAI chat completions URL: the client gets an Anthropic message', limits, async () => {
    const meter = await newMeter();
    const tag = unique('call');
    const body = await lava.gateway(`${providerUrl}/v1/chat/completions`, {
      format: 'anthropic',
      meter_slug: meter.meter_slug,
      headers: { 'x-compat-call': tag, 'anthropic-version': '2023-06-01' },
      body: { model: 'gpt-4o-mini', max_tokens: 400, system: 'Be brief.', messages: [{ role: 'user', content: 'Say hello.' }] },
    });

    assert.equal(body.type, 'message');
    assert.deepEqual(body.content, [{ type: 'text', text: 'Hello from the fake provider.' }]);
    assert.equal(body.stop_reason, 'end_turn');
    const cached = USAGE.prompt_tokens_details.cached_tokens;
    assert.deepEqual(body.usage, {
      input_tokens: USAGE.prompt_tokens - cached, cache_creation_input_tokens: 0, cache_read_input_tokens: cached,
      output_tokens: USAGE.completion_tokens,
    });

    const call = await onlyCallOf(tag);
    assert.deepEqual(call.body.messages[0], { role: 'system', content: 'Be brief.' });
    assert.equal(call.headers.authorization, 'Bearer sk-managed');
    assert.equal(call.headers['anthropic-version'], undefined, 'no Anthropic header goes to an OpenAI-shaped provider');

    const request = await requestOn(meter);
    assert.equal(request.model_usage.input_tokens, USAGE.prompt_tokens);
    assert.equal(request.model_usage.output_tokens, USAGE.completion_tokens);
    // gpt-4o-mini per 1M: 0.15 input, 0.075 cached input, 0.60 output → (1000·0.15 + 200·0.075 + 345·0.60) / 1M
    assert.equal(request.cost, '0.0003720000');
  });

  test('a request with no counterpart in the provider\'s shape is a 400 and the provider is never called', limits, async () => {
    const tag = unique('call');
    const before = (await providerCalls(tag)).total;
    const failure = await apiError(() => lava.gateway(`${providerUrl}/v1/messages`, {
      format: 'openai',
      headers: { 'x-compat-call': tag },
      body: { model: 'claude-sonnet-4-5', n: 2, messages: [{ role: 'user', content: 'Say hello.' }] },
    }));
    assert.equal(failure.status, 400, failure.message);
    assert.equal(failure.error.code, 'untranslatable_request');
    assert.equal((await providerCalls(tag)).total, before, 'the provider\'s call count did not move');
  });
});
