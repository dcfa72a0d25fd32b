// Functions: the list with live figures and a deploy form; per function its
// versions, rollout, live charts (rate, errors by code, latency) polled
// every 2 s, and deploy, rollback and delete behind a confirmation.

import { api, withQuery } from '../api.js';
import { Chart } from '../chart.js';
import {
  bar, bytes, cards, confirmDialog, every, fmt, h, ms, showError, small, table, time,
} from '../dom.js';

const fnPath = (name) => `/v1/functions/${encodeURIComponent(name)}`;

/** The deploy form: a component file, then `PUT /v1/functions/{name}` with the chosen options. */
function deployForm(ctx, fixedName, onDeployed) {
  const name = h('input', { type: 'text', id: 'deploy-name', required: true, pattern: '[a-z0-9][a-z0-9\\-]*',
    value: fixedName ?? '', readonly: fixedName ? true : null });
  const file = h('input', { type: 'file', id: 'deploy-file', accept: '.wasm,application/wasm', required: true });
  const rollout = h('select', { id: 'deploy-rollout' },
    h('option', { value: '' }, 'server default'), h('option', { value: 'direct' }, 'direct'),
    h('option', { value: 'watch' }, 'watch'), h('option', { value: 'canary' }, 'canary'));
  const publicBox = h('input', { type: 'checkbox', id: 'deploy-public' });
  const memory = h('input', { type: 'number', id: 'deploy-memory', min: 1, placeholder: 'default' });
  const button = h('button', { type: 'submit' }, fixedName ? 'Deploy a new version' : 'Deploy');
  const form = h('form', { class: 'inline', 'aria-label': 'Deploy a function' },
    h('label', { for: 'deploy-name' }, 'Name', name),
    h('label', { for: 'deploy-file' }, 'Component (.wasm)', file),
    h('label', { for: 'deploy-rollout' }, 'Rollout', rollout),
    h('label', { for: 'deploy-memory' }, 'Memory (MiB)', memory),
    h('label', { class: 'check', for: 'deploy-public' }, publicBox, 'Public'),
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    button.disabled = true;
    try {
      const query = { rollout: rollout.value, memory_mb: memory.value, public: publicBox.checked ? 'true' : '' };
      const version = await api(withQuery(fnPath(name.value.trim()), query),
        { method: 'PUT', body: chosen, contentType: 'application/wasm', signal: ctx.signal });
      form.reset();
      if (fixedName) name.value = fixedName;
      await onDeployed(version);
    } catch (err) {
      showError(err, 'Deploy failed');
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function listFigures(ctx) {
  const { functions } = await api('/v1/functions', { signal: ctx.signal });
  return Promise.all(functions.map(async (fn) => {
    const stats = await api(withQuery(`${fnPath(fn.name)}/stats`, { window: '15m' }), { signal: ctx.signal });
    const sum = (field) => stats.versions.reduce((n, v) => n + v[field], 0);
    const errors = stats.versions.reduce((n, v) => n + v.requests - (v.outcomes.ok ?? 0), 0);
    const p99 = stats.versions.length ? Math.max(...stats.versions.map((v) => v.latency_ms.p99)) : null;
    return { ...fn, requests: sum('requests'), rate: sum('rate_per_s'), errors, p99 };
  }));
}

async function listPage(root, ctx) {
  root.append(h('h1', {}, 'Functions'));
  const live = h('div');
  let shown = '';
  const refresh = async () => {
    const rows = await listFigures(ctx);
    const text = JSON.stringify(rows);
    if (text === shown) return;
    shown = text;
    live.replaceChildren(table([
      { label: 'Function', value: (f) => h('a', { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name) },
      { label: 'Version', value: (f) => f.version, num: true, field: 'version' },
      { label: 'Kind', value: (f) => f.kind },
      { label: 'Public', value: (f) => (f.public ? 'yes' : 'no') },
      { label: 'Requests (15 min)', value: (f) => fmt(f.requests), num: true, field: 'requests' },
      { label: 'Rate /s', value: (f) => small(f.rate), num: true, field: 'rate' },
      { label: 'Errors', value: (f) => fmt(f.errors), num: true, field: 'errors' },
      { label: 'p99', value: (f) => ms(f.p99), num: true, field: 'p99' },
    ], rows, { empty: 'No function deployed yet.', caption: 'Functions', rowKey: (f) => f.name }));
  };
  await refresh();
  root.append(live, h('h2', {}, 'Deploy'),
    deployForm(ctx, null, (v) => { location.hash = `#/functions/${encodeURIComponent(v.name)}`; }));
  every(2000, ctx.signal, refresh);
}

/**
 * The windows to draw: the API lists only windows that had calls, so the
 * idle ones between are filled in (no calls: rate 0, no latency). Their
 * length is the smallest gap between two windows (10 s when there is one).
 */
function windowSeconds(stats) {
  const busy = [...new Set(stats.versions.flatMap((v) => v.windows.map((w) => w.start_ms)))].sort((a, b) => a - b);
  let gap = Infinity;
  for (let i = 1; i < busy.length; i++) gap = Math.min(gap, busy[i] - busy[i - 1]);
  const step = Number.isFinite(gap) ? gap : 10_000;
  const span = busy.length ? Math.round((busy.at(-1) - busy[0]) / step) : 0;
  if (!busy.length || span > 5000) return { starts: busy, seconds: step / 1000 };
  return { starts: Array.from({ length: span + 1 }, (_, i) => busy[0] + i * step), seconds: step / 1000 };
}

/** The charts' series from one stats answer. */
function chartData(stats, latencyVersion) {
  const { starts, seconds } = windowSeconds(stats);
  const xs = starts.map((s) => s / 1000);
  const at = (version, field) => {
    const byStart = new Map(version.windows.map((w) => [w.start_ms, w]));
    return starts.map((s) => field(byStart.get(s)));
  };
  const perSecond = (n) => +((n ?? 0) / seconds).toFixed(3);
  const rate = stats.versions.map((v) => ({ label: `v${v.version} req/s`, values: at(v, (w) => perSecond(w?.requests)) }));
  const errorTotals = starts.map((s) => stats.versions.reduce((n, v) =>
    n + (v.windows.find((w) => w.start_ms === s)?.errors ?? 0), 0));
  rate.push({ label: 'errors/s', values: errorTotals.map(perSecond) });
  const chosen = stats.versions.find((v) => v.version === latencyVersion) ?? stats.versions[0];
  const latency = ['p50', 'p90', 'p99'].map((p) => ({
    label: p, values: chosen ? at(chosen, (w) => w?.latency_ms[p] ?? null) : [],
  }));
  return { xs, rate, latency, chosen };
}

function errorsByCode(stats) {
  const counts = {};
  for (const v of stats.versions) {
    for (const [code, n] of Object.entries(v.outcomes)) counts[code] = (counts[code] ?? 0) + n;
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const entries = Object.entries(counts).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h('p', { class: 'muted' }, 'No calls in this window.');
  return h('ul', { class: 'bars', 'aria-label': 'Calls by outcome' }, entries.map(([code, n]) => h('li',
    { dataset: { code } },
    h('span', {}, code),
    bar(n / total, code === 'ok' ? 'bar' : 'bar bad'),
    h('span', { class: 'num', dataset: { field: 'count' } }, fmt(n)))));
}

function versionsTable(detail) {
  return table([
    { label: 'Version', value: (v) => (v.version === detail.version ? `${v.version} (active)` : v.version), field: 'version' },
    { label: 'Deployed', value: (v) => time(v.created_at_ms) },
    { label: 'Kind', value: (v) => v.kind },
    { label: 'Size', value: (v) => bytes(v.size_bytes), num: true },
    { label: 'Memory', value: (v) => `${v.limits.memory_mb} MiB`, num: true },
    { label: 'Timeout', value: (v) => ms(v.limits.timeout_ms), num: true },
    { label: 'Digest', value: (v) => h('code', { title: v.digest }, v.digest.slice(0, 12)) },
  ], [...detail.versions].reverse(), { caption: 'Versions', rowKey: (v) => String(v.version) });
}

function rolloutText(detail) {
  const r = detail.rollout;
  if (!r) return 'No rollout in progress.';
  return `${r.mode}: version ${r.candidate_version} gets ${r.percent}% of calls, stable version `
    + `${r.stable_version}; promoted at ${time(r.until_ms)} unless it regresses.`;
}

async function detailPage(root, ctx, name) {
  root.append(h('h1', {}, `Function ${name}`));
  const summary = h('div');
  const rollout = h('p', { id: 'rollout', role: 'status' });
  const versions = h('div');
  const windowSelect = h('select', { id: 'stats-window' },
    ['5m', '15m', '1h', '6h', '24h'].map((w) => h('option', { value: w, selected: w === '15m' }, w)));
  const versionSelect = h('select', { id: 'latency-version' });
  const rateChart = new Chart('Requests and errors per second', { unit: '' });
  const latencyChart = new Chart('Latency percentiles', { unit: ' ms' });
  rateChart.element.id = 'rate-chart';
  latencyChart.element.id = 'latency-chart';
  ctx.signal.addEventListener('abort', () => { rateChart.destroy(); latencyChart.destroy(); });
  const outcomes = h('div', { id: 'outcomes' });
  const totals = h('div');
  let detail;

  const showDetail = async () => {
    detail = await api(fnPath(name), { signal: ctx.signal });
    summary.replaceChildren(cards([
      { label: 'Active version', field: 'active-version', value: detail.version },
      { label: 'Kind', field: 'kind', value: detail.kind },
      { label: 'Memory limit', field: 'memory', value: detail.limits.memory_mb, text: `${detail.limits.memory_mb} MiB` },
      { label: 'Public', field: 'public', value: detail.public, text: detail.public ? 'yes' : 'no' },
    ]));
    rollout.textContent = rolloutText(detail);
    versions.replaceChildren(versionsTable(detail));
  };
  const showStats = async () => {
    const stats = await api(withQuery(`${fnPath(name)}/stats`, { window: windowSelect.value }), { signal: ctx.signal });
    const wanted = Number(versionSelect.value) || detail.version;
    const options = stats.versions.map((v) => v.version);
    if (options.join() !== [...versionSelect.options].map((o) => o.value).join()) {
      versionSelect.replaceChildren(...options.map((v) => h('option', { value: v, selected: v === wanted }, `v${v}`)));
    }
    const { xs, rate, latency, chosen } = chartData(stats, wanted);
    const requests = stats.versions.reduce((n, v) => n + v.requests, 0);
    totals.replaceChildren(cards([
      { label: 'Requests in window', field: 'window-requests', value: requests },
      { label: 'Rate /s', field: 'window-rate', value: stats.versions.reduce((n, v) => n + v.rate_per_s, 0),
        text: small(stats.versions.reduce((n, v) => n + v.rate_per_s, 0)) },
      { label: `p99 (v${chosen?.version ?? '–'})`, field: 'window-p99', value: chosen?.latency_ms.p99, text: ms(chosen?.latency_ms.p99) },
    ]));
    outcomes.replaceChildren(errorsByCode(stats));
    await Promise.all([rateChart.set(xs, rate), latencyChart.set(xs, latency)]);
  };
  const act = async (question, action, request) => {
    if (!(await confirmDialog(question, action))) return;
    try {
      await request();
      if (action === 'Delete') { location.hash = '#/functions'; return; }
      await showDetail();
      await showStats();
    } catch (err) {
      showError(err, `${action} failed`);
    }
  };
  const rollback = h('button', { type: 'button', class: 'secondary', id: 'rollback' }, 'Roll back');
  rollback.addEventListener('click', () => act(
    `Roll ${name} back from version ${detail.version} to the version before it?`, 'Roll back',
    () => api(`${fnPath(name)}/rollback`, { method: 'POST', signal: ctx.signal })));
  const remove = h('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete');
  remove.addEventListener('click', () => act(
    `Delete ${name} and every one of its versions? This cannot be undone.`, 'Delete',
    () => api(fnPath(name), { method: 'DELETE', signal: ctx.signal })));
  windowSelect.addEventListener('change', () => showStats().catch(showError));
  versionSelect.addEventListener('change', () => showStats().catch(showError));

  await showDetail();
  root.append(summary, rollout,
    h('div', { class: 'toolbar' }, rollback, remove),
    h('h2', {}, 'Live statistics'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'stats-window' }, 'Window', windowSelect),
      h('label', { for: 'latency-version' }, 'Latency of version', versionSelect)),
    totals,
    h('div', { class: 'charts' }, rateChart.element, latencyChart.element),
    h('h2', {}, 'Calls by outcome'), outcomes,
    h('h2', {}, 'Versions'), versions,
    h('h2', {}, 'Deploy a new version'), deployForm(ctx, name, async () => { await showDetail(); }));
  await showStats();
  every(2000, ctx.signal, async () => { await showDetail(); await showStats(); });
}

export function render(root, ctx, name) {
  return name ? detailPage(root, ctx, name) : listPage(root, ctx);
}
