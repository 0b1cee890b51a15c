// The fuzzer of scripts/chaos.sh: N malformed requests over every route and method of openapi.yaml, sent one at a
// time as the "fuzz" merchant, while the "victim" merchant's valid reports flow beside them.
//
//   node scripts/chaos/fuzz.mjs URL CONN N SEED OUT_DIR PROVIDER_URL
//
// Reads OUT_DIR/{fuzz,victim,other}-setup.json (chaos/setup.mjs) and appends to OUT_DIR/service.log's reader.
// Case i is made from (SEED, i) alone, never from an earlier answer, so the same seed sends the same cases in the same
// order; CHAOS_FUZZ_ONLY=3,17 sends only those. Findings, per case: a 5xx or no answer; a stack trace in the answer or
// in the service log; a change to the fuzz merchant's ledger (its ledger tables snapshotted before and after) by a
// refused request; input that must be refused (NUL, invalid UTF-8, lone surrogates, duplicate keys, absurd timestamps,
// bad credentials, other merchants' ids, oversize bodies) accepted with a 2xx. Beside them: every victim report
// acknowledged and stored. Failing cases go to OUT_DIR/fuzz-failures.txt with method, path, headers and the body
// escaped and in hex, and a curl line where the body is small.
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';
import { bearer, call, database, escapeBytes, forwardToken, json, prng, readJson, sleep, stackTraceIn } from './lib.mjs';

const [url, conn, countArg, seedArg, outDir, providerUrl] = process.argv.slice(2);
const N = Number(countArg);
const SEED = Number(seedArg);
const F = readJson(`${outDir}/fuzz-setup.json`);
const V = readJson(`${outDir}/victim-setup.json`);
const O = readJson(`${outDir}/other-setup.json`);
const only = process.env.CHAOS_FUZZ_ONLY ? new Set(process.env.CHAOS_FUZZ_ONLY.split(',').map(Number)) : null;
const dll = process.env.CHAOS_DLL;

// ---------- the routes ----------
// Duplicate keys are tolerated: the fuzzer needs the paths, methods and bodies, not a valid document.
const spec = YAML.parse(readFileSync('openapi.yaml', 'utf8'), { uniqueKeys: false });
const resolve = (node) => {
  let n = node;
  for (let i = 0; n?.$ref && i < 20; i++) n = n.$ref.split('/').slice(1).reduce((o, k) => o?.[k], spec);
  return n;
};
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
const routes = [];
for (const [path, item] of Object.entries(spec.paths ?? {})) {
  for (const method of METHODS) {
    const op = item[method];
    if (!op) continue;
    const parameters = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolve).filter(Boolean);
    const content = resolve(op.requestBody)?.content ?? {};
    const schema = resolve(content['application/json']?.schema);
    routes.push({ path, method: method.toUpperCase(), parameters, schema, takesBody: Boolean(op.requestBody) || path === '/v1/forward' && method === 'post' });
  }
}
if (routes.length === 0) throw new Error('openapi.yaml has no paths');

// ---------- the objects ids point at: the fuzz merchant's own, and another merchant's ----------
async function api(merchant, method, path, body) {
  const response = await call(url, { method, path, headers: bearer(merchant.key), body: body === undefined ? undefined : json(body) });
  if (response.error || response.status >= 300) throw new Error(`${method} ${path} -> ${response.status ?? response.error}: ${response.body?.toString() ?? ''}`);
  return JSON.parse(response.body.toString() || 'null');
}
async function objects(merchant, tag) {
  const customer = merchant.customers[0];
  const report = await api(merchant, 'POST', '/v1/requests', {
    request_id: `${tag}-seed`, customer_id: customer, meter_slug: merchant.meter_slug, input_tokens: 10, output_tokens: 5,
  });
  const hold = await api(merchant, 'POST', '/v1/holds', { customer_id: customer, amount: '1' });
  const keys = await api(merchant, 'GET', '/v1/secret_keys');
  const subscription = (await api(merchant, 'GET', `/v1/customers/${customer}/subscription`))?.subscription;
  return {
    customer_id: customer, meter_id: merchant.meter_id, plan_id: merchant.plan_id, request_id: report.request_id,
    transaction_id: report.transaction_id, hold_id: hold.hold_id, secret_key_id: keys.data?.[0]?.secret_key_id ?? 'key_x',
    subscription_id: subscription?.subscription_id ?? 'sub_x', credit_bundle_id: 'bnd_x', meter_slug: merchant.meter_slug,
  };
}
const own = await objects(F, 'fuzz');
const theirs = await objects(O, 'other');
// Path ids point at spare objects, so a DELETE or PATCH of the fuzz merchant's own ids (a valid request the fuzzer
// may well send) cannot take away the customer and meter its report bodies name, or revoke the key it sends.
const spareMeter = await api(F, 'POST', '/v1/meters', { name: 'fuzz spare', meter_slug: 'fuzz-spare', rate_type: 'fixed', tier_type: 'requests', tiers: [{ start: '0', rate: '1' }] });
const spareSubscription = (await api(F, 'GET', `/v1/customers/${F.customers[1]}/subscription`))?.subscription;
const spareKey = await api(F, 'POST', '/v1/secret_keys', { name: 'fuzz spare' });
const spare = { ...own, customer_id: F.customers[1], meter_id: spareMeter.meter_id, secret_key_id: spareKey.secret_key_id,
  subscription_id: spareSubscription?.subscription_id ?? own.subscription_id,
  plan_id: (await api(F, 'POST', '/v1/plans', { name: 'fuzz spare plan', period_amount: '1', included_credit: '0', billing_interval: 'month',
    rollover_type: 'none', bundle_rollover_type: 'none', meter_ids: [], credit_bundles: [], default_auto_top_up_bundle_index: null })).plan_id };
const theirIds = Object.entries(theirs).filter(([k]) => k !== 'meter_slug' && k !== 'credit_bundle_id').map(([, v]) => v);
const idFor = (name, ids) => ids[name] ?? (name.endsWith('_id') ? ids[name] : undefined) ?? 'x';

// ---------- bodies ----------
const RAW = '\u0001RAW\u0001'; // a placeholder for JSON text JSON.stringify cannot make (huge numbers, lone escapes)
function valueFor(name, schema, rand, i, depth = 0) {
  const s = resolve(schema) ?? {};
  if (name === 'request_id') return `fz-${SEED}-${i}`;
  if (name === 'meter_slug') return own.meter_slug;
  if (name && own[name] && typeof own[name] === 'string') return own[name];
  if (name === 'meter_ids') return [own.meter_id];
  if (s.enum) return rand.pick(s.enum);
  const type = s.type ?? (s.properties ? 'object' : s.items ? 'array' : 'string');
  switch (type) {
    case 'object': {
      if (depth > 4) return {};
      const out = {};
      for (const [key, child] of Object.entries(s.properties ?? {}))
        if ((s.required ?? []).includes(key) || rand.chance(0.6)) out[key] = valueFor(key, child, rand, i, depth + 1);
      return out;
    }
    case 'array': return depth > 4 ? [] : [valueFor(name === 'requests' ? null : name, s.items, rand, i, depth + 1)];
    case 'integer': return rand.int(0, 1000);
    case 'number': return rand.int(0, 1000);
    case 'boolean': return false;
    default:
      if (s.format === 'date-time') return new Date().toISOString();
      if (/amount|rate|cost|credit|price|start/.test(name ?? '')) return '1';
      return `fuzz ${i}`;
  }
}
function baseBody(route, rand, i) {
  if (route.path === '/v1/requests' && route.method === 'POST')
    return { request_id: `fz-${SEED}-${i}`, customer_id: own.customer_id, meter_slug: own.meter_slug, input_tokens: 100, output_tokens: 10, metadata: { fuzz: 'yes' } };
  if (route.path === '/v1/requests/batch')
    return { requests: [0, 1].map((k) => ({ request_id: `fz-${SEED}-${i}-${k}`, customer_id: own.customer_id, meter_slug: own.meter_slug, input_tokens: 100, output_tokens: 10 })) };
  if (route.path.startsWith('/v1/forward'))
    return { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `fuzz ${i}` }], max_tokens: 20, stream: rand.chance(0.3) };
  return route.schema ? valueFor(null, route.schema, rand, i) : {};
}
// Every [path, parent] pair of a JSON value, so a mutation can land at any depth.
function slots(value, out = [], parent = null, key = null) {
  if (parent) out.push([parent, key]);
  if (value && typeof value === 'object') for (const k of Object.keys(value)) slots(value[k], out, value, k);
  return out;
}
const stringSlots = (body) => slots(body).filter(([p, k]) => typeof p[k] === 'string');
const toText = (body, raw = []) => {
  let text = JSON.stringify(body);
  for (const r of raw) text = text.replace(JSON.stringify(RAW), r);
  return text;
};
const bytes = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
// A body whose string at one slot holds raw bytes: the JSON text around it stays valid UTF-8.
function withRawBytes(body, rand, raw) {
  const candidates = stringSlots(body);
  const marker = '\u0002BYTES\u0002';
  if (candidates.length) {
    const [p, k] = rand.pick(candidates);
    p[k] = `${p[k]}${marker}`;
  } else if (body && typeof body === 'object' && !Array.isArray(body)) body.fuzz = marker;
  else return bytes('"', raw, '"');
  const [before, after] = JSON.stringify(body).split(marker);
  return bytes(before, raw, after ?? '');
}

// ---------- the mutations ----------
const HUGE = ['1e308', '1e400', '-1e400', '9223372036854775808', '-9223372036854775809', '18446744073709551616',
  '123456789012345678901234567890.123456789012345678901234567890', '1e-400', '-0', '0.00000000000000000000000000001',
  '"99999999999999999999999999999999999999.9999999999"', '"-1e308"', '"NaN"', '"Infinity"', '79228162514264337593543950336'];
const INVALID_UTF8 = [[0xc3, 0x28], [0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0xed, 0xa0, 0x80], [0x80]];
const SURROGATES = ['\\ud800', '\\udfff', '\\udc00\\ud800', 'a\\ud83d', '\\ud83d\\u0041'];
const TIMESTAMPS = [['0001-01-01T00:00:00Z', 'refuse'], ['9999-12-31T23:59:59Z', 'refuse'], ['+275760-09-13T00:00:00Z', 'refuse'],
  ['-000001-01-01T00:00:00Z', 'refuse'], ['2026-02-30T00:00:00Z', 'refuse'], ['2026-01-01T00:00:00+25:00', 'refuse'],
  ['1900-01-01T00:00:00Z', 'refuse'], ['1970-01-01T00:00:00Z', 'any'], ['2026-01-01T00:00:00.123456789Z', 'any']];
const SEGMENTS = ['', '%00', '%FF%FE', '\u00ff\u00fe', 'x'.repeat(5000), '..%2F..%2Fetc', '%F0%9F%92%A9', '%ED%A0%80', '%C0%AF', "x'--", '%25', '\u00c3\u0028'];
const AUTHS = [
  () => undefined, () => 'Bearer', () => 'Bearer ', () => 'Basic Zm9vOmJhcg==', () => 'Bearer aks_test_000000000000000000000000',
  () => `Bearer ${F.key}\u00ff`, () => 'Bearer \u00c3\u00a9\u00ff\u00fe\u0080', () => `Bearer ${'a'.repeat(10_000)}`,
  () => `Bearer ${F.key.slice(0, -1)}`, () => `bearer  ${F.key} x`, () => `Bearer ${Buffer.from([0xff, 0xfe, 0x7b]).toString('base64')}`,
  () => `Bearer ${forwardToken({ secret_key: 'aks_test_nope', customer_id: own.customer_id, meter_slug: own.meter_slug })}`,
  () => `Bearer ${Buffer.from('{"secret_key":"\\ud800"}').toString('base64')}`, () => `Bearer ${'{'.repeat(3000)}`,
];
const CLASSES = [
  ['wrong-type', 10], ['huge-number', 10], ['deep-nesting', 4], ['nul', 8], ['invalid-utf8', 8], ['lone-surrogate', 8],
  ['duplicate-key', 8], ['other-merchant', 10], ['bad-auth', 8], ['oversize', 2], ['timestamp', 5], ['content-type', 4],
  ['query', 8], ['path', 6], ['truncated', 4], ['method', 2], ['money-bounds', 6],
];
// Values that pass the JSON reader and the validators' types but not the arithmetic or the database's columns
// (bigint token counts whose sum overflows, seconds and costs past numeric(20,6) / numeric(38,10)): a report carrying
// one must be refused alone, never take down the reports it shares a database transaction with.
// As JSON text: a JavaScript number cannot hold 2^63 - 1 exactly.
const BOUNDS = [
  { input_tokens: '9223372036854775807', output_tokens: '9223372036854775807' }, { input_tokens: '9223372036854775807' },
  { input_seconds: '"100000000000000"' }, { output_seconds: '1e15' }, { cost: '"79228162514264337593543950335"' },
  { cost: '"10000000000000000000000000000"' }, { input_characters: '9223372036854775807', output_characters: '1' },
  { input_tokens: '4611686018427387904', output_tokens: '4611686018427387904' },
  // At the validators' own limits: accepted or refused, never a 5xx, and never another report's failure.
  { input_tokens: '1000000000000', output_tokens: '1000000000000' }, { cost: '"1000000000"', input_tokens: '1000000000000' },
  { input_seconds: '"99999999999999.999999"' }, { input_characters: '1000000000000', output_characters: '1000000000000' },
];
const BODY_CLASSES = new Set(['wrong-type', 'huge-number', 'deep-nesting', 'nul', 'invalid-utf8', 'lone-surrogate', 'duplicate-key', 'oversize', 'timestamp', 'content-type', 'truncated']);
const WEIGHT = CLASSES.reduce((s, [, w]) => s + w, 0);

/** Case i: which route, what is wrong with it, and what must come back. Depends on (SEED, i) only. */
function makeCase(i) {
  const rand = prng((SEED * 2654435761 + i * 40503) >>> 0);
  let route = routes[i % routes.length];
  let cls;
  do {
    let roll = rand.next() * WEIGHT;
    cls = CLASSES.find(([, w]) => (roll -= w) < 0)[0];
  } while (BODY_CLASSES.has(cls) && !route.takesBody && cls !== 'content-type' && cls !== 'deep-nesting');
  if (cls === 'money-bounds' || cls === 'timestamp') route = routes.find((r) => r.method === 'POST' && r.path === (rand.chance(0.7) ? '/v1/requests' : '/v1/requests/batch')) ?? route;
  const bodyRoute = route.takesBody;
  const c = { i, cls, route: `${route.method} ${route.path}`, method: route.method, expect: 'any', why: '' };
  const headers = bearer(F.key);
  const pathIds = { ...spare };
  let path = route.path;
  const query = new URLSearchParams();
  if (route.path.startsWith('/v1/forward')) {
    query.set('u', `${providerUrl}/v1/chat/completions`);
    headers.authorization = `Bearer ${forwardToken({ secret_key: F.key, customer_id: own.customer_id, meter_slug: own.meter_slug })}`;
  }
  let body = bodyRoute ? baseBody(route, rand, i) : undefined;
  let text;
  const raw = [];
  const pathParams = route.parameters.filter((p) => p.in === 'path');
  const queryParams = route.parameters.filter((p) => p.in === 'query' && p.name !== 'u');

  switch (cls) {
    case 'wrong-type': {
      const wrong = [{}, [], true, null, 0, -1, 'text', 1.5, [[]], { a: 1 }];
      const candidates = slots(body);
      if (candidates.length) {
        const [p, k] = rand.pick(candidates);
        p[k] = rand.pick(wrong);
        c.why = `${k} set to ${JSON.stringify(p[k])}`;
      } else body = rand.pick(wrong);
      break;
    }
    case 'huge-number': {
      const candidates = slots(body);
      const literal = rand.pick(HUGE);
      raw.push(literal);
      if (candidates.length) {
        const [p, k] = rand.pick(candidates);
        p[k] = RAW;
        c.why = `${k} = ${literal}`;
      } else body = RAW;
      break;
    }
    case 'deep-nesting': {
      const depth = rand.pick([65, 1000, 100_000]);
      const nest = rand.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
      c.why = `${depth} levels`;
      if (body && typeof body === 'object' && !Array.isArray(body) && rand.chance(0.5)) {
        body.metadata = RAW;
        raw.push(nest);
      } else text = nest;
      if (bodyRoute) c.expect = 'refuse';
      break;
    }
    case 'nul': {
      const candidates = stringSlots(body);
      const where = rand.pick(['value', 'key', 'raw']);
      if (where === 'raw' || !candidates.length) {
        text = withRawBytes(body ?? {}, rand, Buffer.from([0x00]));
        c.why = 'raw NUL byte inside a string';
      } else if (where === 'value') {
        const [p, k] = rand.pick(candidates);
        p[k] = `${p[k].slice(0, 3)}\u0000${p[k].slice(3)}`;
        c.why = `\\u0000 in ${k}`;
      } else if (body.metadata && typeof body.metadata === 'object') {
        body.metadata['fu\u0000zz'] = 'x';
        c.why = '\\u0000 in a metadata key';
      } else {
        const [p, k] = rand.pick(candidates);
        p[k] = `\u0000${p[k]}`;
        c.why = `\\u0000 in ${k}`;
      }
      c.expect = 'refuse';
      break;
    }
    case 'invalid-utf8': {
      const seq = Buffer.from(rand.pick(INVALID_UTF8));
      text = withRawBytes(body ?? {}, rand, seq);
      c.why = `bytes ${seq.toString('hex')} inside a string`;
      c.expect = 'refuse';
      break;
    }
    case 'lone-surrogate': {
      const escape = rand.pick(SURROGATES);
      const candidates = stringSlots(body);
      if (candidates.length && rand.chance(0.7)) {
        const [p, k] = rand.pick(candidates);
        p[k] = RAW;
        raw.push(`"${escape}"`);
        c.why = `${k} = "${escape}"`;
      } else if (body?.metadata && typeof body.metadata === 'object') {
        body.metadata[RAW] = 'x';
        raw.push(`"${escape}"`);
        c.why = `metadata key "${escape}"`;
      } else if (candidates.length) {
        const [p, k] = rand.pick(candidates);
        p[k] = RAW;
        raw.push(`"${escape}"`);
        c.why = `${k} = "${escape}"`;
      } else {
        text = `"${escape}"`;
        c.why = `body "${escape}"`;
      }
      c.expect = 'refuse';
      break;
    }
    case 'duplicate-key': {
      if (body && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length) {
        const key = rand.pick(Object.keys(body));
        const second = typeof body[key] === 'string' ? `${body[key]}-dup` : typeof body[key] === 'number' ? body[key] + 1 : body[key];
        const inner = JSON.stringify(body).slice(1, -1);
        text = `{${inner},${JSON.stringify(key)}:${JSON.stringify(second)}}`;
        c.why = `"${key}" twice`;
        c.expect = 'refuse';
      }
      break;
    }
    case 'other-merchant': {
      if (pathParams.length && rand.chance(0.6)) {
        for (const p of pathParams) pathIds[p.name] = idFor(p.name, theirs);
        c.why = 'path ids of another merchant';
        c.expect = 'refuse';
      } else if (body && typeof body === 'object') {
        const candidates = slots(body).filter(([p, k]) => typeof p[k] === 'string' && theirs[k] && own[k] === p[k]);
        if (candidates.length) {
          const [p, k] = rand.pick(candidates);
          p[k] = theirs[k];
          c.why = `${k} of another merchant`;
          c.expect = 'refuse';
        } else if (route.path.startsWith('/v1/forward')) {
          headers.authorization = `Bearer ${forwardToken({ secret_key: F.key, customer_id: theirs.customer_id, meter_slug: own.meter_slug })}`;
          c.why = 'forward token naming another merchant\'s customer';
          c.expect = 'refuse';
        }
      }
      if (!c.why) {
        headers.authorization = `Bearer ${O.key}`;
        for (const p of pathParams) pathIds[p.name] = idFor(p.name, spare);
        c.why = 'another merchant\'s key on this merchant\'s ids';
        if (pathParams.length) c.expect = 'refuse';
      }
      break;
    }
    case 'bad-auth': {
      const value = rand.pick(AUTHS)();
      if (value === undefined) delete headers.authorization;
      else headers.authorization = value;
      c.why = value === undefined ? 'no Authorization' : `Authorization: ${escapeBytes(Buffer.from(value, 'latin1'), 60)}`;
      if (route.path.startsWith('/v1/')) c.expect = 'refuse';
      break;
    }
    case 'oversize': {
      const limit = route.path === '/v1/requests/batch' ? 4 << 20 : 1 << 20;
      const filler = 'z'.repeat(limit + 1024);
      if (body && typeof body === 'object' && !Array.isArray(body)) body.padding = filler;
      else body = { padding: filler };
      c.why = `${limit + 1024}+ bytes`;
      c.expect = 'refuse';
      break;
    }
    case 'timestamp': {
      const [value, expect] = rand.pick(TIMESTAMPS);
      const target = route.path === '/v1/requests/batch' && body?.requests?.[0] ? body.requests[0] : body;
      if (target && typeof target === 'object' && !Array.isArray(target)) target.timestamp = value;
      c.why = `timestamp ${value}`;
      if (route.path === '/v1/requests' && route.method === 'POST') c.expect = expect;
      break;
    }
    case 'content-type': {
      const ct = rand.pick([undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json; charset=utf-16', '\u00ff/\u00fe']);
      if (ct === undefined) delete headers['content-type'];
      else headers['content-type'] = ct;
      if (body === undefined) text = '{"a":1}';
      c.why = `Content-Type: ${ct ?? '(none)'}`;
      break;
    }
    case 'query': {
      const names = [...queryParams.map((p) => p.name), 'limit', 'cursor', 'format'];
      const name = rand.pick(names);
      const value = rand.pick(['-1', '0', '101', '1e99', '99999999999999999999', 'abc', '', '%00', '\u00ff\u00fe', '[[[[', '{"a":', 'eyJ9', 'x'.repeat(20_000), '[["a","\\ud800"]]', 'csv', 'xlsx', '9999-12-31T23:59:59Z', '0001-01-01T00:00:00Z', '2026-13-45', '-1e9']);
      if (route.path.startsWith('/v1/forward') && rand.chance(0.5)) {
        query.set('u', rand.pick(['http://127.0.0.1:1/v1/chat/completions', 'file:///etc/passwd', 'https://example.invalid/', '%00', '', `${providerUrl}/../calls`, `${providerUrl}/v1/%2e%2e/calls`, 'http://[::1]:1/', `${'http://a'.repeat(2000)}`]));
        c.why = `u=${escapeBytes(Buffer.from(query.get('u'), 'latin1'), 80)}`;
        c.expect = 'refuse';
      } else {
        query.set(name, value);
        c.why = `${name}=${escapeBytes(Buffer.from(value, 'latin1'), 60)}`;
      }
      break;
    }
    case 'path': {
      const seg = rand.pick(SEGMENTS);
      if (pathParams.length) for (const p of pathParams) pathIds[p.name] = seg;
      else path = `${route.path}/${seg}`;
      c.why = `path segment ${escapeBytes(Buffer.from(seg, 'latin1'), 60)}`;
      break;
    }
    case 'truncated': {
      const full = toText(body ?? {}, raw);
      text = full.slice(0, rand.int(1, Math.max(1, full.length - 1)));
      c.why = `cut at ${text.length} of ${full.length}`;
      if (bodyRoute) c.expect = 'refuse';
      break;
    }
    case 'money-bounds': {
      const fields = rand.pick(BOUNDS);
      const target = body?.requests?.[0] ?? body;
      if (target && typeof target === 'object' && !Array.isArray(target)) {
        // One placeholder per field, replaced in order by its literal.
        for (const [k, v] of Object.entries(fields)) {
          target[k] = RAW;
          raw.push(v);
        }
      }
      c.why = Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join(', ');
      break;
    }
    case 'method': {
      c.method = rand.pick(['PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'HEAD']);
      c.why = `method ${c.method}`;
      break;
    }
    default:
      break;
  }
  // Other merchants' ids only count as "must refuse" on /v1 routes that look their objects up.
  path = path.replace(/\{([^}]+)\}/g, (_, name) => (cls === 'path' ? pathIds[name] : encodeURIComponent(pathIds[name] ?? idFor(name, spare))));
  const qs = [...query].map(([k, v]) => `${encodeURIComponent(k)}=${k === 'u' ? v : encodeURIComponent(v)}`).join('&');
  c.path = qs ? `${path}?${qs}` : path;
  if (text === undefined && body !== undefined) text = toText(body, raw);
  c.body = text === undefined ? undefined : Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8');
  if (c.method === 'GET' || c.method === 'DELETE' || c.method === 'HEAD') {
    if (!bodyRoute && c.expect === 'refuse' && BODY_CLASSES.has(cls)) c.expect = 'any';
  }
  c.headers = headers;
  return c;
}

// ---------- the victim merchant's steady flow ----------
const victim = { sent: 0, acked: [], failed: [] };
let fuzzing = true;
async function victimWorker(w) {
  const rand = prng(SEED * 7 + w);
  for (let n = 0; fuzzing; n++) {
    const id = `v-${w}-${n}`;
    victim.sent++;
    const response = await call(url, {
      method: 'POST', path: '/v1/requests', headers: bearer(V.key), timeoutMs: 30_000,
      body: json({ request_id: id, customer_id: rand.pick(V.customers), meter_slug: V.meter_slug, input_tokens: rand.int(1, 5000), output_tokens: rand.int(1, 500) }),
    });
    if (!response.error && response.status < 300) victim.acked.push(id);
    else victim.failed.push(`${id}: ${response.status ?? response.error} ${response.body?.toString().slice(0, 200) ?? response.detail}`);
  }
}

// ---------- the fuzz merchant's ledger, before and after each case ----------
const db = await database(conn);
async function snapshot() {
  const { rows: [r] } = await db.query(`
    SELECT (SELECT count(*) FROM ledger_transactions WHERE merchant_id = $1)::text AS txns,
           (SELECT coalesce(max(entry_id), 0) FROM entries WHERE merchant_id = $1)::text AS last_entry,
           (SELECT count(*) FROM entries WHERE merchant_id = $1)::text AS entries,
           (SELECT count(*) FROM requests WHERE merchant_id = $1)::text AS requests,
           (SELECT md5(coalesce(string_agg(account_id || '=' || balance::text, ',' ORDER BY account_id), '')) FROM account_balances WHERE merchant_id = $1) AS balances,
           (SELECT md5(coalesce(string_agg(meter_id || customer_id || '=' || quantity::text, ',' ORDER BY meter_id, customer_id, period_start), '')) FROM usage_totals WHERE merchant_id = $1) AS usage`,
  [F.merchant_id]);
  return r;
}
const same = (a, b) => Object.keys(a).every((k) => a[k] === b[k]);
// What was posted since a snapshot: the transactions of the entries after its last one, and requests rows.
async function postedSince(before) {
  const { rows } = await db.query(`
    SELECT DISTINCT t.kind, t.reference FROM entries e
      JOIN ledger_transactions t ON t.merchant_id = e.merchant_id AND t.transaction_id = e.transaction_id
     WHERE e.merchant_id = $1 AND e.entry_id > $2`, [F.merchant_id, before.last_entry]);
  return rows;
}
// Gateway calls bill after their answer went out, so a billing can land during the next case: it is theirs, not its.
const lateBillable = new Set();

// ---------- the service log ----------
const logPath = `${outDir}/service.log`;
let logOffset = statSync(logPath).size;
function newLog() {
  const size = statSync(logPath).size;
  if (size <= logOffset) return '';
  const fd = openSync(logPath, 'r');
  const buffer = Buffer.alloc(size - logOffset);
  readSync(fd, buffer, 0, buffer.length, logOffset);
  closeSync(fd);
  logOffset = size;
  return buffer.toString('utf8');
}

// A batch answers 200 with an outcome per item: the case was refused when an item was (its two base items are valid).
function itemRefused(c, text) {
  if (!c.path.startsWith('/v1/requests/batch')) return false;
  try {
    return JSON.parse(text).data.some((item) => item.status !== 'created' && item.status !== 'replayed');
  } catch {
    return false;
  }
}

// ---------- run ----------
const findings = [];
const byClass = {};
const byStatus = {};
const classStatus = {};
const routeReached = new Map(routes.map((r) => [`${r.method} ${r.path}`, 0]));
let refusedCount = 0;
let acceptedCount = 0;
let unauthenticated = 0;
let logTraces = 0;
const fail = (c, kind, detail, response) => findings.push({ c, kind, detail, response });

const fresh = new http.Agent({ keepAlive: false });
const victims = [0, 1, 2].map(victimWorker);
newLog();
const started = Date.now();
const cases = only ? [...only].sort((a, b) => a - b) : Array.from({ length: N }, (_, i) => i);
for (const i of cases) {
  const c = makeCase(i);
  byClass[c.cls] = (byClass[c.cls] ?? 0) + 1;
  const before = await snapshot();
  // A connection of its own: a kept-alive one the server is closing (after a 413, say) would look like no answer.
  const response = await call(url, { method: c.method, path: c.path, headers: c.headers, body: c.body, timeoutMs: 30_000, via: fresh });
  const status = response.status ?? response.error;
  byStatus[status] = (byStatus[status] ?? 0) + 1;
  classStatus[c.cls] ??= {};
  classStatus[c.cls][status] = (classStatus[c.cls][status] ?? 0) + 1;
  const text = response.body?.toString('utf8') ?? '';
  if (response.error) {
    // A server may close the connection on a body past its limit before reading it; that is a refusal.
    if (!(c.cls === 'oversize' && response.error === 'network')) fail(c, 'no answer', `${response.error}: ${response.detail}`, response);
  } else {
    if (response.status >= 500) fail(c, '5xx', `status ${response.status}`, response);
    const leak = stackTraceIn(text);
    if (leak) fail(c, 'stack trace in the answer', leak, response);
    if (response.status < 300 && c.expect === 'refuse' && !itemRefused(c, text)) fail(c, 'accepted what must be refused', `status ${response.status} for ${c.why}`, response);
    // Only an answer to the fuzz merchant's own key counts (the other merchant may read its own objects), and only
    // ids the case did not send itself (a 404 naming the id asked for is no leak).
    const sent = `${c.path} ${c.body?.toString('latin1') ?? ''} ${Buffer.from(String(c.headers.authorization ?? '').replace(/^Bearer /, ''), 'base64').toString('latin1')}`;
    if (response.status < 300 && !String(c.headers.authorization ?? '').includes(O.key) && theirIds.some((id) => text.includes(id) && !sent.includes(id)))
      fail(c, 'another merchant\'s data in the answer', `status ${response.status}`, response);
    if (response.status === 401) unauthenticated += c.cls === 'bad-auth' ? 0 : 1;
    const code = (() => { try { return JSON.parse(text)?.error?.code; } catch { return undefined; } })();
    if (response.status !== 401 && code !== 'route_not_found') routeReached.set(c.route, routeReached.get(c.route) + 1);
  }
  const refused = response.error || response.status >= 400;
  if (refused) refusedCount++; else acceptedCount++;
  if (!refused && c.path.startsWith('/v1/forward') && response.headers?.['x-lava-request-id']) lateBillable.add(response.headers['x-lava-request-id']);
  const after = await snapshot();
  if (refused && !same(before, after)) {
    const posted = (await postedSince(before)).filter((p) => !lateBillable.has(p.reference));
    const drift = Object.keys(after).filter((k) => before[k] !== after[k] && !['txns', 'last_entry', 'entries', 'requests', 'balances', 'usage'].includes(k));
    if (posted.length || drift.length || (after.requests !== before.requests && posted.length))
      fail(c, 'refused request changed the ledger', `posted ${posted.map((p) => `${p.kind}:${p.reference}`).join(', ')}`, response);
  }
  const log = newLog();
  const trace = stackTraceIn(log);
  if (trace) {
    logTraces++;
    fail(c, 'stack trace in the service log (this case or the one before)', trace.replace(/\s+/g, ' ').slice(0, 240), response);
  }
}
fuzzing = false;
await Promise.all(victims);
await sleep(1000);
const tailTrace = stackTraceIn(newLog());
if (tailTrace) {
  logTraces++;
  findings.push({ c: null, kind: 'stack trace in the service log (after the last case)', detail: tailTrace.slice(0, 240) });
}
const elapsed = (Date.now() - started) / 1000;

// Every victim report acknowledged must be stored once.
const storedVictim = new Set((await db.query('SELECT request_id FROM requests WHERE merchant_id = $1', [V.merchant_id])).rows.map((r) => r.request_id));
const victimLost = victim.acked.filter((id) => !storedVictim.has(id));
await db.end();
const verify = dll ? spawnSync('dotnet', [dll, 'ledger', 'verify'], { env: { ...process.env, ConnectionStrings__Billing: conn }, encoding: 'utf8', timeout: 300_000 }) : null;

// ---------- report ----------
const esc = (s) => s.replace(/'/g, `'\\''`);
const lines = [];
for (const { c, kind, detail, response } of findings) {
  lines.push(`== ${kind}${c ? ` — case ${c.i} (${c.cls}: ${c.why || 'as generated'}) expect ${c.expect}` : ''}`);
  lines.push(`   ${detail}`);
  if (!c) continue;
  lines.push(`   ${c.method} ${escapeBytes(Buffer.from(c.path, 'latin1'), 400)}`);
  for (const [k, v] of Object.entries(c.headers)) lines.push(`   ${k}: ${escapeBytes(Buffer.from(String(v).replaceAll(F.key, '$FUZZ_KEY').replaceAll(O.key, '$OTHER_KEY'), 'latin1'), 200)}`);
  if (c.body) {
    lines.push(`   body (${c.body.length} bytes, escaped): ${escapeBytes(c.body, 1200)}`);
    lines.push(`   body hex: ${c.body.subarray(0, 600).toString('hex')}${c.body.length > 600 ? '…' : ''}`);
  }
  if (response && !response.error) lines.push(`   answer ${response.status}: ${escapeBytes(response.body, 400)}`);
  if (c.body === undefined || c.body.length <= 2048) {
    const hdrs = Object.entries(c.headers).map(([k, v]) => `-H '${esc(`${k}: ${String(v).replaceAll(F.key, '$FUZZ_KEY').replaceAll(O.key, '$OTHER_KEY')}`)}'`).join(' ');
    const data = c.body ? `printf '%b' '${esc(escapeBytes(c.body, 4096).replace(/\\\\/g, '\\\\\\\\'))}' | ` : '';
    lines.push(`   repro: ${data}curl -sS -X ${c.method} ${hdrs}${c.body ? ' --data-binary @-' : ''} "$URL"'${esc(c.path)}'`);
  }
  lines.push(`   regenerate: CHAOS_SEED=${SEED} CHAOS_FUZZ_ONLY=${c.i} scripts/chaos.sh fuzz`);
}
writeFileSync(`${outDir}/fuzz-failures.txt`, `${lines.join('\n')}\n`);

const kinds = {};
for (const f of findings) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
const count5xx = findings.filter((f) => f.kind === '5xx').length;
const unreached = [...routeReached].filter(([, n]) => n === 0).map(([r]) => r);
const results = [];
const check = (name, ok, detail) => {
  results.push(ok);
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
};
const authCases = cases.length - (byClass['bad-auth'] ?? 0);
check('fuzz reached the handlers', cases.length < routes.length || (unreached.length === 0 && unauthenticated < authCases / 10),
  `${routes.length} routes from openapi.yaml, ${unreached.length} never answered past auth/routing${unreached.length ? ` (${unreached.join(', ')})` : ''}; ` +
  `${unauthenticated} of ${authCases} authenticated cases got 401`);
check('no 5xx', count5xx === 0, `${count5xx} of ${cases.length} cases answered 5xx`);
check('every case answered', !kinds['no answer'], `${kinds['no answer'] ?? 0} cases got no answer`);
check('no stack trace in answers', !kinds['stack trace in the answer'], `${kinds['stack trace in the answer'] ?? 0} answers carried one`);
check('no stack trace in the service log', logTraces === 0, `${logTraces} stack traces logged`);
check('refused requests left the ledger alone', !kinds['refused request changed the ledger'], `${kinds['refused request changed the ledger'] ?? 0} refused cases changed the fuzz merchant's ledger`);
check('malformed input refused', !kinds['accepted what must be refused'], `${kinds['accepted what must be refused'] ?? 0} cases that must be refused were accepted`);
check('no other merchant\'s data', !kinds['another merchant\'s data in the answer'], `${kinds['another merchant\'s data in the answer'] ?? 0} answers carried another merchant's ids`);
check('the other merchant\'s reports unharmed', victim.acked.length > 0 && victim.failed.length === 0 && victimLost.length === 0,
  `${victim.sent} sent beside the fuzzing, ${victim.acked.length} acknowledged, ${victim.failed.length} failed, ${victimLost.length} acknowledged but not stored` +
  (victim.failed.length ? ` e.g. ${victim.failed.slice(0, 3).join(' | ')}` : ''));
if (verify) check('ledger verify', verify.status === 0, `\`ledger verify\` exited ${verify.status}${verify.status === 0 ? '' : `: ${(verify.stdout + verify.stderr).slice(0, 300)}`}`);
console.log('');
console.log(`fuzz: ${cases.length} cases (seed ${SEED}) in ${elapsed.toFixed(1)} s over ${routes.length} routes; ${acceptedCount} accepted, ${refusedCount} refused`);
console.log(`  cases by class: ${Object.entries(byClass).sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
console.log(`  answers by status: ${Object.entries(byStatus).sort().map(([k, v]) => `${k}×${v}`).join(', ')}`);
for (const [k, v] of Object.entries(classStatus).sort()) console.log(`    ${k}: ${Object.entries(v).sort().map(([st, n]) => `${st}×${n}`).join(', ')}`);
console.log(`  findings by kind: ${Object.keys(kinds).length ? Object.entries(kinds).map(([k, v]) => `${k} ${v}`).join(', ') : 'none'}`);
const findingsByClass = {};
for (const f of findings) if (f.c) findingsByClass[`${f.kind} / ${f.c.cls}`] = (findingsByClass[`${f.kind} / ${f.c.cls}`] ?? 0) + 1;
for (const [k, v] of Object.entries(findingsByClass).sort()) console.log(`    ${k}: ${v}`);
console.log(`  5xx: ${count5xx}; failing cases written to ${outDir}/fuzz-failures.txt`);
const failed = results.filter((ok) => !ok).length;
console.log(`chaos fuzz: ${failed ? 'FAIL' : 'PASS'} (${results.length - failed} checks passed, ${failed} failed)`);
process.exit(failed ? 1 : 0);
