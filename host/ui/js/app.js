// The dashboard's shell: sign-in, the admin's tenant picker, and a hash
// router that loads each page's module when it is first visited. A page
// module exports `render(main, ctx, ...params)`; it builds its content, may
// keep it live until `ctx.signal` aborts, and resolves once the first data
// is on the page. The time from navigation to then is the page's render
// time, kept in `main[data-render-ms]` (and as a performance measure).

import { actAs, api, ApiError, forgetKey, key, setKey, withQuery } from './api.js';
import { clearError, h, showError, todayUtc } from './dom.js';

// Each page's module, loaded when the page is first visited.
const PAGES = {
  '': ['overview', 'Overview', () => import('./pages/overview.js')],
  functions: ['functions', 'Functions', () => import('./pages/functions.js')],
  models: ['models', 'Models', () => import('./pages/models.js')],
  datasets: ['datasets', 'Datasets', () => import('./pages/datasets.js')],
  jobs: ['jobs', 'Jobs', () => import('./pages/jobs.js')],
  usage: ['usage', 'Usage and cost', () => import('./pages/usage.js')],
  alerts: ['alerts', 'Alerts and events', () => import('./pages/alerts.js')],
};

const main = document.getElementById('main');
/** Who the key is: `{tenant, admin, view}`; `view` is the tenant the admin picked. */
const session = { tenant: null, admin: false, view: null };
let current = null;

/** Learns the key's tenant (the usage answer names it) and whether it is an admin key. */
async function identify() {
  const usage = await api(withQuery('/v1/usage', { group_by: 'day', from: todayUtc() }));
  session.tenant = usage.tenant;
  session.view = sessionStorage.getItem('muon.view') ?? usage.tenant;
  try {
    const { tenants } = await api('/v1/tenants');
    session.admin = true;
    fillTenantPicker(tenants.map((t) => t.name));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 403)) throw err;
    session.admin = false;
    session.view = session.tenant;
  }
  actAs(session.view === session.tenant ? null : session.view);
  document.getElementById('identity').textContent =
    `${session.admin ? 'admin key' : 'key'} of ${session.tenant}`;
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
}

function fillTenantPicker(names) {
  const select = document.getElementById('tenant');
  if (!names.includes(session.view)) session.view = session.tenant;
  select.replaceChildren(...names.map((name) => h('option', { value: name, selected: name === session.view }, name)));
  document.getElementById('tenant-picker').hidden = false;
}

document.getElementById('tenant').addEventListener('change', (event) => {
  session.view = event.target.value;
  sessionStorage.setItem('muon.view', session.view);
  actAs(session.view === session.tenant ? null : session.view);
  route();
});

document.getElementById('sign-out').addEventListener('click', () => {
  forgetKey();
  sessionStorage.removeItem('muon.view');
  location.hash = '#/';
  location.reload();
});

function signInPage(message) {
  document.title = 'Sign in · muon';
  const input = h('input', { type: 'password', id: 'api-key', name: 'api-key', autocomplete: 'off',
    spellcheck: 'false', required: true, 'aria-describedby': 'key-help' });
  const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to muon'),
    h('label', { for: 'api-key' }, 'API key', input),
    h('p', { id: 'key-help', class: 'muted' },
      'Paste a key (muon_sk_…). It stays in this tab only and is sent as a bearer token to this server.'),
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    try {
      await identify();
      clearError();
      await route();
    } catch (err) {
      forgetKey();
      showError(err, 'Sign-in failed');
      input.focus();
    }
  });
  main.replaceChildren(form);
  if (message) showError(message);
  input.focus();
}

/** Shows the page the hash names. */
async function route() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  if (!key() || !session.tenant) return signInPage();
  const [name = '', ...params] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [module, title, load] = PAGES[name] ?? PAGES[''];
  for (const link of document.querySelectorAll('#nav a')) {
    const target = link.getAttribute('href').replace(/^#\/?/, '');
    link.toggleAttribute('aria-current', target === name);
    if (target === name) link.setAttribute('aria-current', 'page');
  }
  document.title = `${title} · muon`;
  clearError();
  const started = performance.now();
  main.dataset.page = module;
  main.dataset.rendered = 'false';
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const ctx = { ...session, signal: controller.signal };
  try {
    const page = await load();
    const content = h('div');
    await page.render(content, ctx, ...params);
    if (controller.signal.aborted) return;
    main.replaceChildren(content);
  } catch (err) {
    if (controller.signal.aborted) return;
    main.replaceChildren(h('h1', {}, title));
    showError(err);
  }
  const took = performance.now() - started;
  performance.measure(`render:${module}`, { start: started, duration: took });
  main.dataset.renderMs = took.toFixed(1);
  main.dataset.rendered = 'true';
  main.querySelector('h1')?.setAttribute('tabindex', '-1');
  if (document.activeElement === document.body || !main.contains(document.activeElement)) {
    main.querySelector('h1')?.focus({ preventScroll: true });
  }
}

window.addEventListener('hashchange', route);

async function start() {
  if (!key()) return signInPage();
  try {
    await identify();
  } catch (err) {
    forgetKey();
    return signInPage(err);
  }
  await route();
}

start();
