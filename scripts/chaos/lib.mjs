// Shared by the chaos load client, checker and fuzzer: one HTTP call with its outcome classified, a seeded PRNG, the
// markers of a leaked stack trace, and the database connection the checks read the truth from.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import pg from 'pg';

export const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const QUIET = Symbol('quiet');

/**
 * One HTTP request. Resolves {status, headers, body (Buffer), complete} when a whole response arrived, or
 * {error: 'timeout' | 'network' | 'cut', detail} when the outcome is unknown: no answer, or an answer that broke off.
 * headers may hold latin1 strings (bytes 0x80-0xFF go out as they are); body is a Buffer or string.
 */
export function call(url, { method = 'GET', path = '/', headers = {}, body, timeoutMs = 20_000, via = agent } = {}) {
  return new Promise((resolve) => {
    const target = new URL(url);
    const options = {
      host: target.hostname, port: target.port, method, path, headers: { ...headers }, agent: via,
      insecureHTTPParser: true,
    };
    if (body !== undefined && options.headers['content-length'] === undefined && !options.headers['transfer-encoding'])
      options.headers['content-length'] = Buffer.byteLength(body);
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    let request;
    try {
      request = http.request(options, (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('aborted', () => done({ error: 'cut', status: response.statusCode, detail: 'response aborted' }));
        response.on('error', (e) => done({ error: 'cut', status: response.statusCode, detail: e.code || e.message }));
        response.on('end', () => {
          if (!response.complete) return done({ error: 'cut', status: response.statusCode, detail: 'incomplete body' });
          done({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks), complete: true });
        });
      });
    } catch (e) {
      // The request could not even be formed (e.g. a header node refuses): the fuzzer reports it as not sent.
      resolve({ error: 'unsendable', detail: e.code || e.message });
      return;
    }
    const timer = setTimeout(() => {
      done({ error: 'timeout', detail: `no whole answer within ${timeoutMs} ms` });
      request.destroy();
    }, timeoutMs);
    request.on('error', (e) => done({ error: 'network', detail: e.code || e.message }));
    // A server that answered early (413) and closed may fail the rest of the body's write after the request settled:
    // the socket's error is then nobody's to throw.
    request.on('socket', (socket) => {
      if (socket[QUIET]) return;
      socket[QUIET] = true;
      socket.on('error', () => {});
    });
    if (body !== undefined) request.end(body);
    else request.end();
  });
}

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  };
}

/**
 * What a .NET stack trace or exception dump looks like in a response body or a log: frames ("   at Ns.Type.Method("),
 * file positions, or an exception's type name. Any of these leaving the process is a finding.
 */
const STACK_MARKERS = [
  /^\s+at [A-Za-z_][\w.`<>$]*[.:][\w<>$`]+\(/m,
  /\bin \S+\.cs:line \d+/,
  /\b(?:System|Npgsql|Microsoft|Lava)\.[\w.]*Exception\b/,
  /--- End of (?:inner exception )?stack trace/,
];

export function stackTraceIn(text) {
  for (const marker of STACK_MARKERS) {
    const match = marker.exec(text);
    if (match) return text.slice(Math.max(0, match.index - 80), match.index + 160);
  }
  return null;
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** An Npgsql connection string (Host=..;Port=..;Database=..;Username=..;Password=..) as a pg client. */
export async function database(npgsql) {
  const parts = Object.fromEntries(npgsql.split(';').filter(Boolean).map((p) => {
    const at = p.indexOf('=');
    return [p.slice(0, at).trim().toLowerCase(), p.slice(at + 1)];
  }));
  const client = new pg.Client({
    host: parts.host ?? parts.server, port: Number(parts.port ?? 5432), database: parts.database ?? parts.db,
    user: parts.username ?? parts['user id'] ?? parts.user, password: parts.password, connectionTimeoutMillis: 10_000,
  });
  await client.connect();
  return client;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** JSON body as a Buffer, for call(). */
export const json = (value) => Buffer.from(JSON.stringify(value));

export function bearer(key) {
  return { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
}

/** The SDK's forward token: standard base64 of the JSON it is built from. */
export function forwardToken(fields) {
  return Buffer.from(JSON.stringify(fields)).toString('base64');
}

/** A body as something a person can paste: printable ASCII kept, everything else \xNN. */
export function escapeBytes(buffer, max = 4096) {
  let out = '';
  const bytes = buffer.subarray(0, max);
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b <= 0x7e) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return buffer.length > max ? `${out}… (${buffer.length} bytes in all)` : out;
}
