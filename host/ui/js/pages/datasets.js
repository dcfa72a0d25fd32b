// Datasets: the list, and per dataset its report: where the rows went, the
// split, each column's statistics, the label's distribution, the bad rows.

import { api, withQuery } from '../api.js';
import { bar, bytes, cards, fmt, h, table, time } from '../dom.js';

async function listPage(root, ctx) {
  root.append(h('h1', {}, 'Datasets'));
  const { datasets } = await api('/v1/datasets', { signal: ctx.signal });
  root.append(table([
    { label: 'Dataset', value: (d) => h('a', { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name) },
    { label: 'Version', value: (d) => d.version, num: true, field: 'version' },
    { label: 'Rows', value: (d) => fmt(d.rows), num: true, field: 'rows' },
    { label: 'Label', value: (d) => d.label ?? '–' },
    { label: 'Train / validation / test', value: (d) => `${d.splits.train} / ${d.splits.validation} / ${d.splits.test}` },
    { label: 'Size', value: (d) => bytes(d.size), num: true },
    { label: 'Created', value: (d) => time(d.created_at_ms) },
  ], datasets, { empty: 'No dataset uploaded yet.', caption: 'Datasets', rowKey: (d) => d.name }));
}

function splitBar(splits) {
  const total = splits.train + splits.validation + splits.test || 1;
  return h('div', { class: 'split', role: 'img', id: 'split',
    'aria-label': `train ${splits.train} rows, validation ${splits.validation}, test ${splits.test}` },
  ['train', 'validation', 'test'].filter((s) => splits[s] > 0).map((s) => {
    const part = bar(splits[s] / total, s);
    part.removeAttribute('aria-hidden');
    part.dataset.split = s;
    part.dataset.rows = String(splits[s]);
    part.textContent = `${s} ${splits[s]}`;
    return part;
  }));
}

const num = (v) => (v === null || v === undefined ? '–' : fmt(v));

function columnsTable(columns) {
  return table([
    { label: 'Column', value: (c) => c.name, field: 'name' },
    { label: 'Role', value: (c) => c.role },
    { label: 'Kind', value: (c) => c.kind },
    { label: 'Type read', value: (c) => c.source_type },
    { label: 'Missing', value: (c) => fmt(c.missing), num: true, field: 'missing' },
    { label: 'Distinct', value: (c) => `${fmt(c.distinct)}${c.distinct_capped ? '+' : ''}`, num: true },
    { label: 'Min', value: (c) => num(c.stats?.min), num: true, field: 'min' },
    { label: 'Max', value: (c) => num(c.stats?.max), num: true, field: 'max' },
    { label: 'Mean', value: (c) => num(c.stats?.mean), num: true, field: 'mean' },
    { label: 'Std', value: (c) => num(c.stats?.std), num: true, field: 'std' },
    { label: 'Scaling', value: (c) => (c.normalization ? `${c.normalization.method} (${fmt(c.normalization.offset)}, ${fmt(c.normalization.scale)})` : '–') },
    { label: 'Categories', value: (c) => (c.categories ? c.categories.slice(0, 8).join(', ') + (c.categories.length > 8 ? '…' : '') : '–') },
  ], columns, { caption: 'Columns', rowKey: (c) => c.name });
}

function labelTable(label) {
  const values = [...new Set(Object.values(label.distribution).flatMap((d) => Object.keys(d)))];
  if (!values.length) return h('p', { class: 'muted' }, 'A numeric label with many values: no distribution kept.');
  return table([
    { label: label.column, value: (v) => v },
    ...['train', 'validation', 'test'].map((s) => ({
      label: s, value: (v) => fmt(label.distribution[s]?.[v] ?? 0), num: true })),
  ], values.slice(0, 50), { caption: 'Label distribution by split' });
}

async function detailPage(root, ctx, name) {
  root.append(h('h1', {}, `Dataset ${name}`));
  const report = await api(withQuery(`/v1/datasets/${encodeURIComponent(name)}`, {}), { signal: ctx.signal });
  const rows = report.rows;
  root.append(
    cards([
      { label: 'Version', field: 'version', value: report.version },
      { label: 'Rows read', field: 'read', value: rows.read },
      { label: 'Rows kept', field: 'kept', value: rows.kept },
      { label: 'Bad rows', field: 'bad', value: report.bad_rows.count },
      { label: 'Stored', field: 'size', value: report.size, text: bytes(report.size) },
    ]),
    h('p', { class: 'muted' }, `${report.format.toUpperCase?.() ?? report.format}, ${bytes(report.bytes_read)} read, `
      + `made ${time(report.created_at_ms)}; dropped: ${rows.dropped_bad} bad, ${rows.dropped_missing} missing, `
      + `${rows.deduplicated} repeated.`),
    h('h2', {}, 'Split'), splitBar(report.splits),
    h('h2', {}, 'Columns'), columnsTable(report.columns));
  if (report.label) root.append(h('h2', {}, `Label: ${report.label.column}`), labelTable(report.label));
  if (report.bad_rows.count) {
    root.append(h('h2', {}, 'Bad rows'), table([
      { label: 'Where', value: (r) => (r.line !== null && r.line !== undefined ? `line ${r.line}` : `row ${r.row}`) },
      { label: 'Kind', value: (r) => r.kind },
      { label: 'Reason', value: (r) => r.reason },
    ], report.bad_rows.first, { caption: 'Bad rows' }));
  }
}

export function render(root, ctx, name) {
  return name ? detailPage(root, ctx, name) : listPage(root, ctx);
}
