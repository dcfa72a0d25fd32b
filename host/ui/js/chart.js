// Charts with the vendored uPlot, loaded on the first page that draws one so
// the first load stays small. A chart is a <figure> with a caption and a
// text summary for screen readers; `data-points` counts its x values.

import { h } from './dom.js';

const COLORS = ['#2458c6', '#c62828', '#1a7f37', '#9a6700', '#7c4dcc', '#00838f', '#ad1457', '#5d4037'];
let loading;

/** uPlot, with its stylesheet, loaded once (same origin only: the page's CSP allows nothing else). */
function uPlotLoaded() {
  loading ??= new Promise((resolve, reject) => {
    document.head.append(h('link', { rel: 'stylesheet', href: '/ui/vendor/uplot/uPlot.min.css' }));
    const script = h('script', { src: '/ui/vendor/uplot/uPlot.iife.min.js' });
    script.addEventListener('load', () => resolve(window.uPlot));
    script.addEventListener('error', () => { loading = undefined; reject(new Error('the chart library did not load')); });
    document.head.append(script);
  });
  return loading;
}

/**
 * A line chart. `x` is `time` (Unix seconds) or a label such as `epoch`;
 * `set(xs, series)` replaces its data, `series` being `[{label, values}]`.
 */
export class Chart {
  constructor(title, { x = 'time', unit = '', height = 220 } = {}) {
    this.title = title;
    this.xKind = x;
    this.unit = unit;
    this.height = height;
    this.plot = null;
    this.labels = '';
    this.summary = h('p', { class: 'visually-hidden', 'aria-live': 'off' });
    this.area = h('div');
    this.element = h('figure', { class: 'chart', dataset: { points: '0', chart: title } },
      h('figcaption', {}, title), this.area, this.summary);
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(this.element);
  }

  size() {
    return { width: Math.max(200, this.element.clientWidth - 16), height: this.height };
  }

  async set(xs, series) {
    const uPlot = await uPlotLoaded();
    const labels = series.map((s) => s.label).join('\u0000');
    if (!this.plot || labels !== this.labels) {
      this.plot?.destroy();
      this.labels = labels;
      const unit = this.unit;
      this.plot = new uPlot({
        ...this.size(),
        scales: { x: { time: this.xKind === 'time' } },
        axes: [
          { label: this.xKind === 'time' ? undefined : this.xKind },
          { values: (u, ticks) => ticks.map((t) => `${+t.toPrecision(3)}${unit}`), size: 72 },
        ],
        series: [{ label: this.xKind }, ...series.map((s, i) => ({
          label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
          points: { show: xs.length < 40 },
        }))],
      }, [xs, ...series.map((s) => s.values)], this.area);
    } else {
      this.plot.setData([xs, ...series.map((s) => s.values)]);
    }
    this.element.dataset.points = String(xs.length);
    const last = series.map((s) => `${s.label} ${s.values.at(-1) ?? 'none'}${this.unit}`).join(', ');
    this.summary.textContent = `${this.title}: ${xs.length} points; latest ${last}.`;
  }

  destroy() {
    this.resize.disconnect();
    this.plot?.destroy();
  }
}
