// A stub OpenAI-compatible provider for the gateway scenarios of scripts/bench.sh: a separate process on 127.0.0.1
// that answers POST /v1/chat/completions at once and with a constant body, so whatever the gateway adds is the only
// difference between calling it directly and through /v1/forward. (compat/fake-provider.mjs records every call for
// the SDK tests, which would grow without bound under load, and does not stream.)
//
//   node bench/stub-provider.mjs [PORT] [STREAM_GAP_MS] [SERVED_LOG]
//
// Prints its base URL (http://127.0.0.1:PORT) as the first line on stdout once it listens. A body with "stream": true
// gets a server-sent event stream in OpenAI's shape: the first chunk at once, then, STREAM_GAP_MS (default 10) later,
// the rest (content, finish, the usage chunk, data: [DONE]), so time to first byte and time to the last differ as
// they do with a real model. Anything else gets a chat.completion JSON with a usage object. Both bodies are built once.
// With SERVED_LOG (scripts/chaos.sh), every completion it accepts is appended to that file as one JSON line before the
// answer starts ({"event":"served","call":<x-chaos-call header>,"stream":bool,"t":ms}), and another when the answer
// ended whole or was cut ("done" / "cut"): a provider bills the work it accepted, so that is what the gateway must bill.
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const MAX_BODY_BYTES = 1 << 20;
const port = Number(process.argv[2] ?? 0);
const streamGapMs = Number(process.argv[3] ?? 10);
const servedLog = process.argv[4];
if (!Number.isInteger(port) || port < 0 || port > 65535 || !Number.isInteger(streamGapMs) || streamGapMs < 0 || streamGapMs > 5000) {
  process.stderr.write('usage: node bench/stub-provider.mjs [PORT] [STREAM_GAP_MS (0-5000)] [SERVED_LOG]\n');
  process.exit(2);
}

const MODEL = 'gpt-4o-mini';
const USAGE = {
  prompt_tokens: 1200,
  completion_tokens: 345,
  total_tokens: 1545,
  prompt_tokens_details: { cached_tokens: 200 },
  completion_tokens_details: { reasoning_tokens: 45 },
};

const completion = Buffer.from(JSON.stringify({
  id: 'chatcmpl-stub',
  object: 'chat.completion',
  created: 1767225600,
  model: MODEL,
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the stub provider.' }, finish_reason: 'stop' }],
  usage: USAGE,
}));

const chunk = (choices, extra = {}) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-stub', object: 'chat.completion.chunk', created: 1767225600, model: MODEL, choices, ...extra })}\n\n`;
const streamFirst = Buffer.from(chunk([{ index: 0, delta: { role: 'assistant', content: '' } }]));
const streamRest = Buffer.from(
  chunk([{ index: 0, delta: { content: 'Hello from' } }]) +
  chunk([{ index: 0, delta: { content: ' the stub provider.' }, finish_reason: 'stop' }]) +
  chunk([], { usage: USAGE }) +
  'data: [DONE]\n\n');

const jsonHeaders = { 'content-type': 'application/json', 'content-length': completion.length };
const sseHeaders = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

function fail(response, status, message) {
  const text = JSON.stringify({ error: { message, type: 'invalid_request_error' } });
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

// Synchronous, so the line is on disk before the first byte of the answer leaves.
function logServed(event, call, stream) {
  if (servedLog) appendFileSync(servedLog, `${JSON.stringify({ event, call, stream, t: Date.now() })}\n`);
}

const server = createServer((request, response) => {
  if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
    request.resume();
    fail(response, 404, `no route ${request.method} ${request.url}`);
    return;
  }
  const chunks = [];
  let size = 0;
  request.on('data', (data) => {
    size += data.length;
    if (size <= MAX_BODY_BYTES) chunks.push(data);
  });
  request.on('end', () => {
    if (size > MAX_BODY_BYTES) return fail(response, 413, 'body too large');
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return fail(response, 400, 'the body is not JSON');
    }
    if (servedLog) {
      const call = String(request.headers['x-chaos-call'] ?? '');
      const stream = body?.stream === true;
      logServed('served', call, stream);
      response.on('close', () => logServed(response.writableFinished ? 'done' : 'cut', call, stream));
    }
    if (body?.stream !== true) {
      response.writeHead(200, jsonHeaders);
      response.end(completion);
      return;
    }
    response.writeHead(200, sseHeaders);
    response.write(streamFirst);
    const rest = () => response.end(streamRest);
    if (streamGapMs > 0) setTimeout(rest, streamGapMs);
    else setImmediate(rest);
  });
});
server.keepAliveTimeout = 60_000;
// Ended by the bench with SIGTERM; its default action suits (nothing to flush).
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
});
