// Small helpers to build the pages: elements from data (text only, never
// HTML strings), tables, numbers and times, the error line and the dialog.

/** An element: `h('td', {class: 'num'}, 'text', child, ...)`. `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return element;
}

/**
 * A table: `columns` are `{label, value: row => text or Node, num, field}`;
 * a column with `field` marks its cells `data-field` for tests and readers.
 */
export function table(columns, rows, { caption, empty = 'Nothing yet.', rowKey } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((row) => h('tr', { dataset: rowKey ? { key: rowKey(row) } : {} },
    columns.map((c) => h('td', { class: c.num ? 'num' : null, dataset: c.field ? { field: c.field } : {} },
      c.value(row)))));
  return h('div', { class: 'table-wrap' },
    h('table', {}, caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', {}, head), h('tbody', {}, body)));
}

/** Headline figures: `[{label, field, value, text}]` as a definition list of cards. */
export function cards(items) {
  return h('dl', { class: 'cards' }, items.map((item) => h('div', { class: 'card' },
    h('dt', {}, item.label),
    h('dd', { dataset: { field: item.field, value: String(item.value ?? '') } }, item.text ?? fmt(item.value)))));
}

const numbers = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** A number for people: grouped digits, at most two decimals; `–` for none. */
export function fmt(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  return typeof value === 'number' ? numbers.format(value) : String(value);
}

/** A small figure such as a rate: three significant digits, so 0.00111 is not shown as 0. */
export function small(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  return fmt(Number(value.toPrecision(3)));
}

export function ms(value) { return value === undefined || value === null ? '–' : `${fmt(value)} ms`; }

export function bytes(value) {
  if (value === undefined || value === null) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let n = value, unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit++; }
  return `${fmt(unit ? Number(n.toFixed(1)) : n)} ${units[unit]}`;
}

/** Micro-units of the plan's currency, as units with six decimals. */
export function money(micros) {
  if (micros === undefined || micros === null) return '–';
  return (micros / 1e6).toFixed(6);
}

/** A Unix-millisecond instant in the reader's locale. */
export function time(at) {
  if (at === undefined || at === null) return '–';
  return new Date(at).toLocaleString();
}

/** `YYYY-MM-DD` of today in UTC: the usage API's days are UTC days. */
export function todayUtc() { return new Date().toISOString().slice(0, 10); }

/** A state word, coloured by its class. */
export function state(word) { return h('span', { class: `state-${word}` }, word); }

const errorBox = () => document.getElementById('error');

/** Shows an error with the API's code and message (or a browser error's message). */
export function showError(err, context) {
  if (err?.name === 'AbortError') return;
  const box = errorBox();
  box.replaceChildren(
    context ? `${context}: ` : '',
    err?.code ? h('code', {}, err.code) : '',
    err?.code ? ' ' : '',
    err?.message ?? String(err));
  box.hidden = false;
}

export function clearError() {
  const box = errorBox();
  box.hidden = true;
  box.replaceChildren();
}

/** Asks for confirmation in a modal dialog; resolves to true on Confirm. */
export function confirmDialog(text, action = 'Confirm') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = action;
  return new Promise((resolve) => {
    const done = (answer) => () => dialog.close(answer);
    const onOk = done('ok'), onCancel = done('cancel');
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', () => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      resolve(dialog.returnValue === 'ok');
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** A link that downloads `rows` (objects with the same keys) as CSV. */
export function csvLink(label, filename, rows) {
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const quote = (v) => {
    const text = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const csv = [columns.join(','), ...rows.map((r) => columns.map((c) => quote(r[c])).join(','))].join('\n') + '\n';
  const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  return h('a', { class: 'button secondary', href: url, download: filename }, label);
}

/** Runs `task` now and every `ms` until `signal` aborts; errors are shown, not thrown. */
export function every(ms, signal, task) {
  let timer;
  const run = async () => {
    try { await task(); } catch (err) { showError(err); }
    if (!signal.aborted) timer = setTimeout(run, ms);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  timer = setTimeout(run, ms);
}

/** A horizontal bar `share` (0 to 1) of its track. Its width is set through the
 * CSSOM: the page's CSP refuses `style` attributes. */
export function bar(share, className = 'bar') {
  const element = h('span', { class: className, dataset: { share: share.toFixed(4) }, 'aria-hidden': 'true' });
  element.style.width = `${(share * 100).toFixed(2)}%`;
  return element;
}
