// A client that reports usage the way a careful merchant does: each report has its own request_id, and a report whose
// outcome is unknown (connection error, timeout, 5xx) is sent again with the same request_id until it is acknowledged
// (201) or the run ends. Writes the acknowledged request ids (one a line) and a JSON summary.
// Usage: node report-client.mjs BASE_URL SECRET_KEY CUSTOMER_ID SECONDS WORKERS OUT_DIR
import { writeFileSync, appendFileSync } from 'node:fs';

const [baseUrl, key, customer, secondsArg, workersArg, out] = process.argv.slice(2);
const deadline = Date.now() + Number(secondsArg) * 1000;
const workers = Number(workersArg);
const acked = [];
let attempts = 0, retries = 0, replayed = 0, refused = 0;
// The longest stretch in which no report at all was acknowledged: what a failover costs when the service's own retries
// hide the errors from the client.
let lastAck = Date.now(), longestGap = 0, slowest = 0;
// Moments when some report was waiting on an unknown outcome: [start, end] per outage seen by a worker.
const outages = [];

async function send(requestId) {
  const res = await fetch(`${baseUrl}/v1/requests`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ request_id: requestId, customer_id: customer, meter_slug: 'chaos', input_tokens: 1000 }),
    signal: AbortSignal.timeout(30_000),
  });
  await res.text();
  return res;
}

async function worker(w) {
  for (let n = 0; Date.now() < deadline; n++) {
    const requestId = `chaos-${w}-${n}`;
    let failingSince = null;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      attempts++;
      let status = 0;
      try {
        const sentAt = Date.now();
        const res = await send(requestId);
        slowest = Math.max(slowest, Date.now() - sentAt);
        status = res.status;
        if (status === 201) {
          if (res.headers.get('idempotent-replayed') === 'true') replayed++;
          acked.push(requestId);
          longestGap = Math.max(longestGap, Date.now() - lastAck);
          lastAck = Date.now();
          break;
        }
        if (status < 500 && status !== 429) { refused++; break; }
      } catch {
        // no answer: the outcome is unknown, so the same request_id goes again
      }
      failingSince ??= Date.now();
      if (Date.now() >= deadline + 60_000) break;
      retries++;
      await new Promise((r) => setTimeout(r, delay));
    }
    if (failingSince !== null) outages.push([failingSince, Date.now()]);
  }
}

await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
// Seconds without service: the union of the outage intervals.
outages.sort((a, b) => a[0] - b[0]);
let down = 0, cur = null;
for (const [s, e] of outages) {
  if (!cur || s > cur[1]) { if (cur) down += cur[1] - cur[0]; cur = [s, e]; } else cur[1] = Math.max(cur[1], e);
}
if (cur) down += cur[1] - cur[0];
writeFileSync(`${out}/acked.txt`, acked.join('\n') + '\n');
const summary = { acknowledged: acked.length, attempts, retries, replayed, refused, outages: outages.length, seconds_without_service: +(down / 1000).toFixed(2),
  longest_gap_between_acks_s: +(longestGap / 1000).toFixed(2), slowest_answer_s: +(slowest / 1000).toFixed(2) };
writeFileSync(`${out}/client.json`, JSON.stringify(summary));
console.log(JSON.stringify(summary));
