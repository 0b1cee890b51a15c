// Time to first byte of streamed chat completions, for the gateway scenarios of scripts/bench.sh (wrk only times whole
// responses). CONNECTIONS loops, each on its own keep-alive connection, send one streaming request after another for
// SECONDS; per request it records the time from sending to the first body byte (the first SSE chunk) and to the end.
//
//   node bench/ttfb.mjs URL SECONDS CONNECTIONS MODE SECRET_KEY CUSTOMERS
//
// MODE and the authorisation are bench/wrk/forward.lua's (direct, customer, byok). Prints one line:
//   requests/s  ttfb_p50_ms  ttfb_p99_ms  errors  total_p50_ms  total_p99_ms
// Percentiles are nearest-rank over the requests that completed inside the window; an error is a non-200 status, a
// body that is not an event stream ending in data: [DONE], or a failed connection.
import http from 'node:http';

const [url, secondsArg, connectionsArg, mode, key = '', customersArg = '1'] = process.argv.slice(2);
const seconds = Number(secondsArg);
const connections = Number(connectionsArg);
const customers = Number(customersArg);
if (!url || !(seconds >= 1 && seconds <= 600) || !(connections >= 1 && connections <= 256) || !(customers >= 1) ||
    !['direct', 'customer', 'byok'].includes(mode)) {
  process.stderr.write('usage: node bench/ttfb.mjs URL SECONDS(1-600) CONNECTIONS(1-256) direct|customer|byok SECRET_KEY CUSTOMERS\n');
  process.exit(2);
}

const token = (fields) => 'Bearer ' + Buffer.from(JSON.stringify({ secret_key: key, ...fields })).toString('base64');
const customerTokens = mode === 'customer'
  ? Array.from({ length: customers }, (_, c) => token({ customer_id: `cus_bench_${String(c).padStart(4, '0')}`, meter_slug: 'tokens' }))
  : [];
const fixedToken = mode === 'byok' ? token({ provider_key: 'sk-bench-byok' }) : 'Bearer sk-bench-byok';
const body = Buffer.from(JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello to the benchmark.' }],
  max_tokens: 256,
  stream: true,
  stream_options: { include_usage: true },
}));

const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
const target = new URL(url);
const ttfb = [];
const total = [];
let errors = 0;
let sent = 0;

function once(loop) {
  const n = sent++;
  const authorization = mode === 'customer' ? customerTokens[(n * 7919 + loop * 104729) % customers] : fixedToken;
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    let first = 0n;
    let tail = '';
    const request = http.request(target, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': body.length, authorization },
    }, (response) => {
      response.on('data', (data) => {
        if (first === 0n) first = process.hrtime.bigint();
        tail = (tail + data.toString('latin1')).slice(-64);
      });
      response.on('end', () => {
        const end = process.hrtime.bigint();
        if (response.statusCode === 200 && first !== 0n && tail.endsWith('data: [DONE]\n\n')) {
          ttfb.push(Number(first - start) / 1e6);
          total.push(Number(end - start) / 1e6);
        } else {
          errors++;
        }
        resolve();
      });
      response.on('error', () => { errors++; resolve(); });
    });
    request.on('error', () => { errors++; resolve(); });
    request.end(body);
  });
}

const deadline = Date.now() + seconds * 1000;
const started = process.hrtime.bigint();
await Promise.all(Array.from({ length: connections }, async (_, loop) => {
  while (Date.now() < deadline) await once(loop);
}));
const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
agent.destroy();

const rank = (values, p) => {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)];
};
const f = (v) => v.toFixed(2);
process.stdout.write(`${(ttfb.length / elapsedSeconds).toFixed(1)} ${f(rank(ttfb, 0.5))} ${f(rank(ttfb, 0.99))} ${errors} ` +
  `${f(rank(total, 0.5))} ${f(rank(total, 0.99))}\n`);
