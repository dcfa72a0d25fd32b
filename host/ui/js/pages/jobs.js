// Jobs: the list; per job its trials, live curves from its event stream
// (`GET /v1/jobs/{id}/events`, read with fetch so the key goes as a header),
// and the report once it is over.

import { api, followEvents } from '../api.js';
import { Chart } from '../chart.js';
import { cards, every, fmt, h, money, showError, state, table, time } from '../dom.js';

const OVER = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

async function listPage(root, ctx) {
  root.append(h('h1', {}, 'Jobs'));
  const live = h('div');
  const refresh = async () => {
    const { jobs } = await api('/v1/jobs', { signal: ctx.signal });
    live.replaceChildren(table([
      { label: 'Job', value: (j) => h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id) },
      { label: 'State', value: (j) => state(j.state), field: 'state' },
      { label: 'Function', value: (j) => j.function },
      { label: 'Dataset', value: (j) => j.dataset },
      { label: 'Submitted', value: (j) => time(j.created_at_ms) },
    ], jobs, { empty: 'No job submitted yet.', caption: 'Jobs', rowKey: (j) => j.id }));
  };
  await refresh();
  root.append(live);
  every(3000, ctx.signal, refresh);
}

/** A metric with four significant digits: losses near 0 stay readable. */
const metric = (v) => (v !== 0 && Math.abs(v) < 0.01 ? v.toExponential(3) : fmt(Number(v.toPrecision(4))));
const metricsText = (metrics) => Object.entries(metrics ?? {}).map(([k, v]) => `${k} ${metric(v)}`).join(', ') || '–';

function trialsTable(job) {
  return table([
    { label: 'Trial', value: (t) => (t.trial === job.best_trial ? `${t.trial} (best)` : t.trial), field: 'trial' },
    { label: 'State', value: (t) => state(t.state), field: 'state' },
    { label: 'Epoch', value: (t) => `${t.epoch} / ${job.spec.epochs}`, num: true, field: 'epoch' },
    { label: 'Hyper-parameters', value: (t) => metricsText(t.hyper) },
    { label: 'Latest metrics', value: (t) => metricsText(t.metrics), field: 'metrics' },
    { label: 'Attempts', value: (t) => t.attempt, num: true },
    { label: 'Error', value: (t) => t.error ?? '' },
  ], job.trials, { caption: 'Trials', rowKey: (t) => String(t.trial) });
}

function reportSection(report) {
  const parts = [cards([
    { label: 'Best trial', field: 'best-trial', value: report.best_trial },
    { label: `Objective (${report.objective.mode})`, field: 'objective', value: report.objective.metric },
    { label: 'Wall time', field: 'wall', value: report.wall_time_s, text: `${fmt(report.wall_time_s)} s` },
    { label: 'CPU time', field: 'cpu', value: report.cpu_time_s, text: `${fmt(report.cpu_time_s)} s` },
    { label: 'Cost', field: 'cost', value: report.cost_micros, text: money(report.cost_micros) },
  ])];
  if (report.best_hyper) parts.push(h('p', {}, `Best hyper-parameters: ${metricsText(report.best_hyper)}`));
  if (report.test) {
    parts.push(h('h3', {}, `Test split (${report.test.rows} rows)`),
      h('p', { id: 'test-metrics' }, metricsText(report.test.metrics)));
    if (report.test.confusion) {
      const classes = report.test.confusion.map((_, i) => i);
      parts.push(table([
        { label: 'true \\ predicted', value: (row) => row.i },
        ...classes.map((c) => ({ label: String(c), value: (row) => row.counts[c], num: true })),
      ], report.test.confusion.map((counts, i) => ({ i, counts })), { caption: 'Confusion matrix' }));
    }
  }
  if (report.exported) {
    parts.push(h('p', {}, 'Exported as model ',
      h('a', { href: `#/models/${encodeURIComponent(report.exported.model)}` }, report.exported.model),
      ` version ${report.exported.version}.`));
  }
  return parts;
}

/** The curves so far: metric → trial → values by epoch; each metric a chart, each trial a line. */
class Curves {
  constructor(signal) {
    this.data = new Map();
    this.charts = new Map();
    this.element = h('div', { class: 'charts', id: 'curves' });
    signal.addEventListener('abort', () => this.charts.forEach((c) => c.destroy()));
  }

  add({ trial, epoch, metrics }) {
    for (const [metric, value] of Object.entries(metrics)) {
      if (!this.data.has(metric)) this.data.set(metric, new Map());
      const byTrial = this.data.get(metric);
      if (!byTrial.has(trial)) byTrial.set(trial, []);
      byTrial.get(trial)[epoch - 1] = value;
    }
  }

  async draw() {
    for (const [metric, byTrial] of this.data) {
      if (!this.charts.has(metric)) {
        const chart = new Chart(metric, { x: 'epoch' });
        chart.element.dataset.metric = metric;
        this.charts.set(metric, chart);
        this.element.append(chart.element);
      }
      const epochs = Math.max(...[...byTrial.values()].map((v) => v.length));
      const xs = Array.from({ length: epochs }, (_, i) => i + 1);
      const trials = [...byTrial.keys()].sort((a, b) => a - b);
      await this.charts.get(metric).set(xs, trials.map((t) => ({
        label: `trial ${t}`, values: xs.map((_, i) => byTrial.get(t)[i] ?? null),
      })));
    }
  }
}

async function detailPage(root, ctx, id) {
  root.append(h('h1', {}, `Job ${id}`));
  const summary = h('div');
  const trials = h('div', { id: 'trials' });
  const report = h('div', { id: 'report' });
  const curves = new Curves(ctx.signal);
  const stream = h('p', { class: 'muted', id: 'stream', role: 'status' }, 'Following the event stream…');
  let job;
  const showJob = async () => {
    job = await api(jobPath(id), { signal: ctx.signal });
    summary.replaceChildren(cards([
      { label: 'State', field: 'state', value: job.state, text: state(job.state) },
      { label: 'Function', field: 'function', value: job.spec.function, text: `${job.spec.function} v${job.function_version}` },
      { label: 'Dataset', field: 'dataset', value: job.spec.dataset, text: `${job.spec.dataset} v${job.dataset_version}` },
      { label: 'Trials', field: 'trials', value: job.trials.length },
      { label: 'Epochs per trial', field: 'epochs', value: job.spec.epochs },
    ]), job.error ? h('p', { class: 'bad' }, job.error) : '');
    trials.replaceChildren(trialsTable(job));
    if (OVER.has(job.state) && !report.childElementCount) {
      report.replaceChildren(h('h2', {}, 'Report'), ...reportSection(await api(`${jobPath(id)}/report`, { signal: ctx.signal })));
    }
  };
  // Events come in bursts (a checkpoint's epochs at once): redraw at most every 500 ms.
  let pending = null;
  const redraw = () => {
    pending ??= setTimeout(async () => {
      pending = null;
      try { await Promise.all([curves.draw(), showJob()]); } catch (err) { showError(err); }
    }, 500);
  };
  ctx.signal.addEventListener('abort', () => clearTimeout(pending));
  await showJob();
  root.append(summary, h('h2', {}, 'Curves'), stream, curves.element, h('h2', {}, 'Trials'), trials, report);
  followEvents(`${jobPath(id)}/events`, ({ data }) => {
    if (data.type === 'epoch') curves.add(data);
    redraw();
  }, ctx.signal).then(() => {
    stream.textContent = 'The job is over; its stream has ended.';
    redraw();
  }, (err) => {
    if (!ctx.signal.aborted) { stream.textContent = 'The event stream failed.'; showError(err, 'Event stream'); }
  });
}

export function render(root, ctx, id) {
  return id ? detailPage(root, ctx, id) : listPage(root, ctx);
}
