// Overview: today's requests, errors, p99 and cost for the tenant, the
// firing alerts, and each function's figures today; refreshed every 2 s.

import { api, withQuery } from '../api.js';
import { cards, every, fmt, h, money, ms, table, time, todayUtc } from '../dom.js';

/** Seconds since midnight UTC: the statistics window that is "today". */
function secondsToday() {
  const now = Date.now();
  return Math.max(1, Math.floor((now - Date.parse(todayUtc())) / 1000));
}

/** Every function's statistics today: requests, errors, worst p99, over its versions. */
async function functionFigures(signal) {
  const { functions } = await api('/v1/functions', { signal });
  const window = secondsToday();
  return Promise.all(functions.map(async (fn) => {
    const stats = await api(withQuery(`/v1/functions/${encodeURIComponent(fn.name)}/stats`, { window }), { signal });
    const requests = stats.versions.reduce((n, v) => n + v.requests, 0);
    const errors = stats.versions.reduce((n, v) => n + v.requests - (v.outcomes.ok ?? 0), 0);
    const p99 = stats.versions.length ? Math.max(...stats.versions.map((v) => v.latency_ms.p99)) : null;
    return { name: fn.name, version: fn.version, kind: fn.kind, requests, errors, p99 };
  }));
}

async function load(ctx) {
  const [usage, figures, alerts] = await Promise.all([
    api(withQuery('/v1/usage', { group_by: 'day', from: todayUtc() }), { signal: ctx.signal }),
    functionFigures(ctx.signal),
    api(withQuery('/v1/alerts', { state: 'firing' }), { signal: ctx.signal }),
  ]);
  return { usage, figures, alerts };
}

function view(ctx, { usage, figures, alerts }) {
  const today = usage.groups.reduce((sum, g) => ({
    requests: sum.requests + g.requests, cost_micros: sum.cost_micros + g.cost_micros,
  }), { requests: 0, cost_micros: 0 });
  const errors = figures.reduce((n, f) => n + f.errors, 0);
  const p99s = figures.filter((f) => f.p99 !== null).map((f) => f.p99);
  const p99 = p99s.length ? Math.max(...p99s) : null;
  const parts = [
    cards([
      { label: 'Requests today', field: 'requests', value: today.requests },
      { label: 'Errors today', field: 'errors', value: errors, text: fmt(errors) },
      { label: 'p99 today (slowest function)', field: 'p99', value: p99, text: ms(p99) },
      { label: 'Cost today', field: 'cost', value: today.cost_micros, text: money(today.cost_micros) },
    ]),
    h('p', { class: 'muted' }, 'Requests and cost from the usage ledger (UTC day); errors and p99 from this '
      + 'node\'s live statistics since it started.'),
  ];
  parts.push(h('h2', {}, 'Firing alerts'), table([
    { label: 'Since', value: (a) => time(a.starts_at_ms) },
    { label: 'Detector', value: (a) => a.labels.detector },
    { label: 'About', value: (a) => a.labels.function ?? a.labels.model ?? '' },
    { label: 'Summary', value: (a) => a.summary },
  ], alerts.alerts, { empty: 'No alert is firing.', caption: 'Firing alerts' }));
  parts.push(h('h2', {}, 'Functions today'), table([
    { label: 'Function', value: (f) => h('a', { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name) },
    { label: 'Version', value: (f) => f.version, num: true },
    { label: 'Requests', value: (f) => fmt(f.requests), num: true, field: 'requests' },
    { label: 'Errors', value: (f) => fmt(f.errors), num: true, field: 'errors' },
    { label: 'p99', value: (f) => ms(f.p99), num: true, field: 'p99' },
  ], figures, { empty: 'No function deployed yet.', caption: 'Functions today', rowKey: (f) => f.name }));
  return parts;
}

export async function render(root, ctx) {
  const live = h('div');
  root.append(h('h1', {}, `Overview of ${ctx.view}`), live);
  // Redrawn only when a figure changed, so keyboard focus is not lost every 2 s.
  let shown = '';
  const refresh = async () => {
    const data = await load(ctx);
    const text = JSON.stringify(data);
    if (text !== shown) {
      shown = text;
      live.replaceChildren(...view(ctx, data));
    }
  };
  await refresh();
  every(2000, ctx.signal, refresh);
}
