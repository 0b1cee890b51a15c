// A stand-in for an OpenAI-compatible provider, for compat/gateway.test.mjs and compat/openai_client.test.mjs (not a
// test file: node --test only runs *.test.mjs). compat/run.sh starts it before the service, because the service reads its allow-list
// (Forward__AllowedUpstreams__0) at start-up and the port is only known once this server listens.
//
// It prints its base URL (http://127.0.0.1:PORT) as the first line on stdout once it listens, then serves:
//   POST /v1/chat/completions  a chat completion with a fixed usage (USAGE below), recording the call; streamed as
//                              server-sent events when the body asks for `stream: true`
//   POST /v1/messages          a non-streaming Anthropic message with a fixed usage (ANTHROPIC_USAGE), recording the call
//   GET  /calls?tag=T          {total, calls: [{method, path, headers, body}]}: every call ever received counts in
//                              total; calls holds those whose x-compat-call header is T (a test's own calls)
// /calls is outside /v1, and run.sh allows only $URL/v1 upstream, so the gateway itself can never reach it.
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

/** What every completion reports: prompt_tokens includes the cached ones, completion_tokens the reasoning ones. */
export const USAGE = {
  prompt_tokens: 1200,
  completion_tokens: 345,
  total_tokens: 1545,
  prompt_tokens_details: { cached_tokens: 200 },
  completion_tokens_details: { reasoning_tokens: 45 },
};

/** What every Anthropic message reports: input_tokens excludes the cache reads and writes. */
export const ANTHROPIC_USAGE = {
  input_tokens: 100,
  cache_creation_input_tokens: 200,
  cache_read_input_tokens: 1000,
  output_tokens: 300,
};

const MAX_BODY_BYTES = 1 << 20;
const calls = [];

function send(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// A streamed chat completion as OpenAI sends it: the text in deltas, then (only when stream_options.include_usage is
// set) a last chunk with no choices carrying the usage, then [DONE].
function streamChat(response, body) {
  const id = `chatcmpl-fake${calls.length}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices, extra = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, choices, ...extra })}\n\n`;
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  response.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
  for (const word of ['Hello ', 'from ', 'the ', 'fake ', 'provider.']) {
    response.write(chunk([{ index: 0, delta: { content: word }, finish_reason: null }]));
  }
  response.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
  if (body.stream_options?.include_usage === true) response.write(chunk([], { usage: USAGE }));
  response.end('data: [DONE]\n\n');
}

const server = createServer(async (request, response) => {
  const url = new URL(request.url, 'http://127.0.0.1');
  try {
    if (request.method === 'GET' && url.pathname === '/calls') {
      const tag = url.searchParams.get('tag');
      send(response, 200, { total: calls.length, calls: calls.filter((c) => c.headers['x-compat-call'] === tag) });
      return;
    }
    if (request.method === 'POST' && url.pathname === '/v1/chat/completions') {
      const text = await readBody(request);
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        send(response, 400, { error: { message: 'the body is not JSON', type: 'invalid_request_error' } });
        return;
      }
      calls.push({ method: request.method, path: url.pathname + url.search, headers: request.headers, body });
      if (body.stream === true) {
        streamChat(response, body);
        return;
      }
      send(response, 200, {
        id: `chatcmpl-fake${calls.length}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the fake provider.' }, finish_reason: 'stop' }],
        usage: USAGE,
      });
      return;
    }
    if (request.method === 'POST' && url.pathname === '/v1/messages') {
      let body;
      try {
        body = JSON.parse(await readBody(request));
      } catch {
        send(response, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'the body is not JSON' } });
        return;
      }
      calls.push({ method: request.method, path: url.pathname + url.search, headers: request.headers, body });
      send(response, 200, {
        id: `msg_fake${calls.length}`,
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [{ type: 'text', text: 'Hello from the fake provider.' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: ANTHROPIC_USAGE,
      });
      return;
    }
    send(response, 404, { error: { message: `no route ${request.method} ${url.pathname}`, type: 'invalid_request_error' } });
  } catch (e) {
    send(response, 500, { error: { message: String(e.message), type: 'server_error' } });
  }
});

// Only as a program: the test file imports USAGE from here without starting a server.
// run.sh ends it with SIGTERM, whose default action suits: the recorded calls die with it.
// An optional first argument is the port (docs/getting-started.md uses 5090); without it any free port.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
    process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
  });
}
