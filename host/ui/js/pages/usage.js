// Usage and cost: totals by day and by function between two dates (UTC), each
// downloadable as CSV. An admin sees the tenant picked above.

import { api, withQuery } from '../api.js';
import { bytes, cards, csvLink, fmt, h, money, showError, table, todayUtc } from '../dom.js';

const dayOf = (ms) => new Date(Number(ms)).toISOString().slice(0, 10);

function usageTable(groups, label, caption) {
  return table([
    { label, value: (g) => g.group, field: 'group' },
    { label: 'Requests', value: (g) => fmt(g.requests), num: true, field: 'requests' },
    { label: 'CPU ms', value: (g) => fmt(g.cpu_ms), num: true },
    { label: 'Wall ms', value: (g) => fmt(g.wall_ms), num: true },
    { label: 'GB-s', value: (g) => g.gb_seconds.toPrecision(3), num: true },
    { label: 'Compute ms', value: (g) => fmt(g.compute_ms), num: true },
    { label: 'In', value: (g) => bytes(g.bytes_in), num: true },
    { label: 'Out', value: (g) => bytes(g.bytes_out), num: true },
    { label: 'Cost', value: (g) => money(g.cost_micros), num: true, field: 'cost' },
  ], groups, { caption, empty: 'No usage in this period.', rowKey: (g) => g.group });
}

export async function render(root, ctx) {
  const monthStart = `${todayUtc().slice(0, 8)}01`;
  const from = h('input', { type: 'date', id: 'usage-from', value: monthStart, required: true });
  const to = h('input', { type: 'date', id: 'usage-to', value: '' });
  const form = h('form', { class: 'inline', 'aria-label': 'Period' },
    h('label', { for: 'usage-from' }, 'From (UTC)', from),
    h('label', { for: 'usage-to' }, 'To, exclusive (empty: now)', to),
    h('button', { type: 'submit' }, 'Show'));
  const results = h('div', { id: 'usage' });
  root.append(h('h1', {}, `Usage and cost of ${ctx.view}`), form, results);
  const load = async () => {
    const query = (group_by) => withQuery('/v1/usage', { group_by, from: from.value, to: to.value });
    const [byDay, byFunction] = await Promise.all([
      api(query('day'), { signal: ctx.signal }), api(query('function'), { signal: ctx.signal })]);
    const days = byDay.groups.map((g) => ({ ...g, group: dayOf(g.group) }));
    const total = (field) => byFunction.groups.reduce((n, g) => n + g[field], 0);
    const period = `${from.value}_${to.value || 'now'}`;
    results.replaceChildren(
      cards([
        { label: 'Requests', field: 'requests', value: total('requests') },
        { label: 'Cost', field: 'cost', value: total('cost_micros'), text: money(total('cost_micros')) },
        { label: 'CPU time', field: 'cpu', value: total('cpu_ms'), text: `${fmt(total('cpu_ms') / 1000)} s` },
      ]),
      h('h2', {}, 'By day'), h('div', { class: 'toolbar' },
        csvLink('Download CSV (by day)', `muon-usage-${byDay.tenant}-by-day-${period}.csv`, days)),
      usageTable(days, 'Day (UTC)', 'Usage by day'),
      h('h2', {}, 'By function'), h('div', { class: 'toolbar' },
        csvLink('Download CSV (by function)', `muon-usage-${byFunction.tenant}-by-function-${period}.csv`, byFunction.groups)),
      usageTable(byFunction.groups, 'Function', 'Usage by function'));
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); load().catch((err) => showError(err)); });
  await load();
}
