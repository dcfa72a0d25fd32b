// Models: each model's signature, backend and device; per model its live
// statistics by version (computes, outcomes, compute time by device).

import { api, withQuery } from '../api.js';
import { Chart } from '../chart.js';
import { bytes, cards, every, fmt, h, ms, small, table, time } from '../dom.js';

const signature = (specs) => specs.map((t) => `${t.name}: ${t.type}[${t.shape.join(', ')}]`).join('; ');

async function listPage(root, ctx) {
  root.append(h('h1', {}, 'Models'));
  const { models } = await api('/v1/models', { signal: ctx.signal });
  root.append(table([
    { label: 'Model', value: (m) => h('a', { href: `#/models/${encodeURIComponent(m.name)}` }, m.name) },
    { label: 'Version', value: (m) => m.version, num: true, field: 'version' },
    { label: 'Backend', value: (m) => m.backend, field: 'backend' },
    { label: 'Device', value: (m) => m.target, field: 'target' },
    { label: 'Inputs', value: (m) => signature(m.inputs) },
    { label: 'Outputs', value: (m) => signature(m.outputs) },
    { label: 'Size', value: (m) => bytes(m.size), num: true },
  ], models, { empty: 'No model pushed yet.', caption: 'Models', rowKey: (m) => m.name }));
}

function tensors(title, specs) {
  return [h('h3', {}, title), table([
    { label: 'Name', value: (t) => t.name },
    { label: 'Type', value: (t) => t.type },
    { label: 'Shape', value: (t) => `[${t.shape.join(', ')}]` },
  ], specs, { caption: title })];
}

async function detailPage(root, ctx, name) {
  root.append(h('h1', {}, `Model ${name}`));
  const path = `/v1/models/${encodeURIComponent(name)}`;
  const model = await api(path, { signal: ctx.signal });
  const chart = new Chart('Compute time percentiles (latest version)', { unit: ' ms' });
  ctx.signal.addEventListener('abort', () => chart.destroy());
  const live = h('div');
  root.append(cards([
    { label: 'Version', field: 'version', value: model.version },
    { label: 'Backend', field: 'backend', value: model.backend },
    { label: 'Device', field: 'target', value: model.target },
    { label: 'Size', field: 'size', value: model.size, text: bytes(model.size) },
  ]),
  h('p', { class: 'muted' }, `Uploaded ${time(model.created_at_ms)}`,
    model.job ? [' by job ', h('a', { href: `#/jobs/${encodeURIComponent(model.job)}` }, model.job)] : ''),
  h('h2', {}, 'Signature'), ...tensors('Inputs', model.inputs), ...tensors('Outputs', model.outputs),
  h('h2', {}, 'Statistics (15 min)'), live, h('div', { class: 'charts' }, chart.element));
  const refresh = async () => {
    const stats = await api(withQuery(`${path}/stats`, { window: '15m' }), { signal: ctx.signal });
    live.replaceChildren(table([
      { label: 'Version', value: (v) => v.version, field: 'version' },
      { label: 'Computes', value: (v) => fmt(v.requests), num: true, field: 'requests' },
      { label: 'Rate /s', value: (v) => small(v.rate_per_s), num: true },
      { label: 'p50', value: (v) => ms(v.latency_ms.p50), num: true },
      { label: 'p90', value: (v) => ms(v.latency_ms.p90), num: true },
      { label: 'p99', value: (v) => ms(v.latency_ms.p99), num: true, field: 'p99' },
      { label: 'Compute by device', value: (v) => Object.entries(v.compute_ms).map(([d, t]) => `${d} ${ms(t)}`).join(', ') || '–' },
      { label: 'Outcomes', value: (v) => Object.entries(v.outcomes).map(([o, n]) => `${o} ${n}`).join(', ') },
    ], stats.versions, { empty: 'No compute in this window.', caption: 'Statistics by version' }));
    const latest = stats.versions[0];
    const windows = latest?.windows ?? [];
    await chart.set(windows.map((w) => w.start_ms / 1000),
      ['p50', 'p90', 'p99'].map((p) => ({ label: p, values: windows.map((w) => w.latency_ms[p]) })));
  };
  await refresh();
  every(2000, ctx.signal, refresh);
}

export function render(root, ctx, name) {
  return name ? detailPage(root, ctx, name) : listPage(root, ctx);
}
