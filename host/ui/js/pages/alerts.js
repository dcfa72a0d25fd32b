// Alerts and events: the tenant's alerts (firing first), and its audit log,
// newest first, followed every 3 s with `after=next_after`.

import { api, withQuery } from '../api.js';
import { every, h, state, table, time } from '../dom.js';

function alertsTable(alerts) {
  const sorted = [...alerts].sort((a, b) => (a.state === b.state ? 0 : a.state === 'firing' ? -1 : 1));
  return table([
    { label: 'State', value: (a) => state(a.state), field: 'state' },
    { label: 'Detector', value: (a) => a.labels.detector, field: 'detector' },
    { label: 'About', value: (a) => [a.labels.function ?? a.labels.model ?? '', a.labels.version ? ` v${a.labels.version}` : '', a.labels.feature ? ` (${a.labels.feature})` : ''].join('') },
    { label: 'Summary', value: (a) => a.summary },
    { label: 'Started', value: (a) => time(a.starts_at_ms) },
    { label: 'Resolved', value: (a) => time(a.ends_at_ms) },
  ], sorted, { caption: 'Alerts', empty: 'No alert yet.', rowKey: (a) => a.id });
}

function eventsTable(events) {
  return table([
    { label: 'When', value: (e) => time(e.at_ms) },
    { label: 'Kind', value: (e) => e.kind, field: 'kind' },
    { label: 'Subject', value: (e) => e.subject, field: 'subject' },
    { label: 'What happened', value: (e) => e.message },
  ], events, { caption: 'Events, newest first', empty: 'No event yet.', rowKey: (e) => String(e.id) });
}

export async function render(root, ctx) {
  root.append(h('h1', {}, 'Alerts and events'));
  const alerts = h('div', { id: 'alerts' });
  const events = h('div', { id: 'events' });
  let log = [];
  let after = 0;
  const refresh = async () => {
    const [list, page] = await Promise.all([
      api(withQuery('/v1/alerts', { limit: 200 }), { signal: ctx.signal }),
      api(withQuery('/v1/events', { after, limit: 1000 }), { signal: ctx.signal }),
    ]);
    alerts.replaceChildren(alertsTable(list.alerts));
    if (page.events.length || !log.length) {
      log = [...page.events.reverse(), ...log].slice(0, 500);
      after = page.next_after;
      events.replaceChildren(eventsTable(log));
    }
  };
  await refresh();
  root.append(h('h2', {}, 'Alerts'), alerts, h('h2', {}, 'Events'), events);
  every(3000, ctx.signal, refresh);
}
