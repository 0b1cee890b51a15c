'use strict';
// The finance page: a read-only key, one month, and what the API says about it. The key lives in this page's memory
// only (never stored, never in a URL). Money stays exact: the API's 10-place decimal strings are shown as they come,
// and the little arithmetic done here (credits remaining, chart scale) is on BigInt units of 1e-10.

const SCALE = 10n ** 10n;
const MAX_ACCOUNT_PAGES = 10;
const state = { key: '', from: '', to: '', month: '' };
const $ = (id) => document.getElementById(id);

function units(text) {
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = (negative ? text.slice(1) : text).split('.');
  const value = BigInt(whole) * SCALE + BigInt((fraction + '0000000000').slice(0, 10));
  return negative ? -value : value;
}

function money(value) {
  const negative = value < 0n;
  const magnitude = negative ? -value : value;
  return (negative ? '-' : '') + (magnitude / SCALE).toString() + '.' + (magnitude % SCALE).toString().padStart(10, '0');
}

function localOffset() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return sign + String(Math.floor(abs / 60)).padStart(2, '0') + ':' + String(abs % 60).padStart(2, '0');
}

function monthBounds(month, offset) {
  const [year, mon] = month.split('-').map(Number);
  const next = mon === 12 ? `${year + 1}-01` : `${year}-${String(mon + 1).padStart(2, '0')}`;
  return { from: `${month}-01T00:00:00${offset}`, to: `${next}-01T00:00:00${offset}` };
}

async function api(path, params, accept = 'application/json') {
  const url = path + (params ? '?' + new URLSearchParams(params) : '');
  const response = await fetch(url, { headers: { Authorization: 'Bearer ' + state.key, Accept: accept } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      message = problem.error?.message ?? problem.detail ?? message;
    } catch { /* not a problem document: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = 'num';
  return td;
}

async function loadTrialBalance() {
  const params = { group_by: 'kind' };
  // A month still running is shown as of now; a past month as of its end, so it ties to the month's export.
  if (new Date(state.to) <= new Date()) params.as_of = state.to;
  const tb = await (await api('/v1/ledger/trial-balance', params)).json();
  const body = $('trial-balance').tBodies[0];
  body.replaceChildren();
  for (const line of tb.lines) {
    const row = body.insertRow();
    row.dataset.kind = line.kind;
    cell(row, line.kind);
    cell(row, line.type);
    cell(row, line.debits, true);
    cell(row, line.credits, true);
    cell(row, line.balance, true);
  }
  const total = tb.totals[0] ?? { debits: money(0n), credits: money(0n), balance: money(0n), currency: '' };
  $('tb-total-debits').textContent = total.debits;
  $('tb-total-credits').textContent = total.credits;
  $('tb-total-balance').textContent = total.balance;
  $('tb-as-of').textContent = tb.as_of ? `as of ${tb.as_of}` : 'as of now';
}

function chart(items) {
  const ns = 'http://www.w3.org/2000/svg';
  const width = 720, height = 200, top = 16, bottom = 20;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Amount charged per day');
  const max = items.reduce((m, i) => (units(i.total_charge) > m ? units(i.total_charge) : m), 0n);
  const slot = width / Math.max(items.length, 1);
  items.forEach((item, index) => {
    // Heights in thousandths of the tallest bar, computed on exact units.
    const permille = max === 0n ? 0 : Number((units(item.total_charge) * 1000n) / max);
    const barHeight = ((height - top - bottom) * permille) / 1000;
    const rect = document.createElementNS(ns, 'rect');
    rect.setAttribute('x', String(index * slot + 1));
    rect.setAttribute('y', String(height - bottom - barHeight));
    rect.setAttribute('width', String(Math.max(slot - 2, 1)));
    rect.setAttribute('height', String(barHeight));
    rect.dataset.date = item.date;
    rect.dataset.charge = item.total_charge;
    rect.dataset.requests = String(item.total_requests);
    const title = document.createElementNS(ns, 'title');
    title.textContent = `${item.date}: ${item.total_charge} charged, ${item.total_requests} requests`;
    rect.appendChild(title);
    svg.appendChild(rect);
    if (index % 7 === 0) {
      const label = document.createElementNS(ns, 'text');
      label.setAttribute('x', String(index * slot + 1));
      label.setAttribute('y', String(height - 5));
      label.textContent = item.date.slice(5);
      svg.appendChild(label);
    }
  });
  const scale = document.createElementNS(ns, 'text');
  scale.setAttribute('x', '2');
  scale.setAttribute('y', '11');
  scale.textContent = `max ${money(max)} per day`;
  svg.appendChild(scale);
  return svg;
}

async function loadUsage() {
  const usage = await (await api('/v1/usage', { start: state.from, end: state.to })).json();
  $('usage-chart').replaceChildren(chart(usage.items));
  $('usage-total-requests').textContent = String(usage.totals.total_requests);
  $('usage-total-tokens').textContent = String(usage.totals.total_usage_tokens);
  $('usage-total-cost').textContent = usage.totals.total_cost;
  $('usage-total-charge').textContent = usage.totals.total_charge;
  $('usage-range').textContent = `${state.from} to ${state.to}`;
}

async function loadCustomers() {
  const customers = new Map();
  let cursor = null;
  let pages = 0;
  do {
    const params = { limit: '100' };
    if (cursor) params.cursor = cursor;
    const page = await (await api('/v1/ledger/accounts', params)).json();
    for (const account of page.data) {
      if (!account.customer_id) continue;
      const c = customers.get(account.customer_id) ?? { credits: 0n, receivable: 0n };
      // Credit accounts are credit-normal: what the customer still has is the negated balance.
      if (account.kind === 'receivable') c.receivable += units(account.balance);
      else c.credits -= units(account.balance);
      customers.set(account.customer_id, c);
    }
    cursor = page.has_more ? page.next_cursor : null;
  } while (cursor && ++pages < MAX_ACCOUNT_PAGES);
  const body = $('customers').tBodies[0];
  body.replaceChildren();
  for (const [id, c] of customers) {
    const row = body.insertRow();
    row.dataset.customer = id;
    cell(row, id);
    cell(row, money(c.credits), true).dataset.field = 'credits_remaining';
    cell(row, money(c.receivable), true).dataset.field = 'receivable';
  }
  $('customers-note').textContent = cursor ? `first ${customers.size} customers` : `${customers.size} customers, now`;
}

async function download() {
  const response = await api('/v1/ledger/entries', { format: 'csv', from: state.from, to: state.to }, 'text/csv');
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = `ledger-entries-${state.month}.csv`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function run(action, busy, done) {
  document.body.dataset.state = 'loading';
  $('status').textContent = busy;
  try {
    await action();
    document.body.dataset.state = 'loaded';
    $('status').textContent = done;
  } catch (error) {
    document.body.dataset.state = 'error';
    $('status').textContent = error.message;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const now = new Date();
  $('month').value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
  $('offset').value = localOffset();
  $('connect').addEventListener('submit', (event) => {
    event.preventDefault();
    state.key = $('key').value.trim();
    state.month = $('month').value;
    Object.assign(state, monthBounds(state.month, $('offset').value));
    run(async () => {
      await Promise.all([loadTrialBalance(), loadUsage(), loadCustomers()]);
      $('download').disabled = false;
    }, 'Loading…', `Loaded ${state.month}.`);
  });
  $('download').addEventListener('click', () => run(download, 'Exporting…', 'Export downloaded.'));
});
