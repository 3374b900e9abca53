// Xnode Studio: the shell, the client-side router and the connection status.

import { h, clear, icon, shortId } from './ui.js';
import { subscribe } from './api.js';
import { loadTenant, onTenantChange, tenant } from './tenant.js';

const PAGES = [
  { path: 'network', title: 'Network', icon: 'network', load: () => import('./pages/network.js') },
  { path: 'deployments', title: 'Deployments', icon: 'deploy', load: () => import('./pages/deployments.js') },
  { path: 'storage', title: 'Storage', icon: 'storage', load: () => import('./pages/storage.js') },
  { path: 'observe', title: 'Observability', icon: 'observe', load: () => import('./pages/observe.js') },
  { path: 'earnings', title: 'Earnings and usage', icon: 'coins', load: () => import('./pages/earnings.js') },
  { path: 'tenant', title: 'Tenant', icon: 'key', load: () => import('./pages/tenant.js') },
];

const main = document.getElementById('main');
let cleanup = null;
let renderId = 0;

function currentPage() {
  const first = location.pathname.split('/')[1] || 'network';
  return PAGES.find((p) => p.path === first) || null;
}

export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  render();
}

async function render() {
  const id = ++renderId;
  const page = currentPage();
  document.querySelectorAll('#nav a').forEach((a) => {
    if (page && a.dataset.page === page.path) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  if (!page) {
    clear(main, h('section.page', h('h1', 'Page not found'), h('p.muted', `There is no page at ${location.pathname}.`), h('a.btn', { href: '/network', 'data-link': '' }, 'Go to the network')));
    return;
  }
  document.title = `${page.title} · Xnode Studio`;
  const container = h('section.page', { 'data-page': page.path });
  clear(main, container);
  try {
    const mod = await page.load();
    if (id !== renderId) return;
    cleanup = mod.render(container, { params: location.pathname.split('/').slice(2).map(decodeURIComponent), navigate }) || null;
  } catch (e) {
    clear(container, h('div.alert.error', { role: 'alert' }, `This page failed to load: ${e.message}`));
  }
  main.focus({ preventScroll: true });
}

function buildNav() {
  const nav = document.getElementById('nav');
  clear(nav, PAGES.map((p) => h('li', h('a', { href: `/${p.path}`, 'data-link': '', 'data-page': p.path }, icon(p.icon), h('span', p.title)))));
}

function whoami(t) {
  const el = document.getElementById('whoami');
  clear(el, t
    ? h('a.tenant-chip', { href: '/tenant', 'data-link': '', title: `Tenant ${t.tenant}` }, icon('key'), h('span', shortId(t.tenant)))
    : h('a.tenant-chip.none', { href: '/tenant', 'data-link': '' }, icon('key'), h('span', 'No tenant key')));
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  if (a.getAttribute('href') !== location.pathname) navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

buildNav();
onTenantChange(whoami);
whoami(null);
subscribe((live) => {
  const conn = document.getElementById('conn');
  const n = live.snapshot ? live.snapshot.nodes.filter((x) => x.state === 'alive').length : 0;
  conn.className = `conn ${live.connected ? 'ok' : 'down'}`;
  clear(conn, h('span.dot', { 'aria-hidden': 'true' }), h('span', live.connected ? `Live · ${n} node${n === 1 ? '' : 's'} alive` : 'Reconnecting…'));
});
if (location.pathname === '/') history.replaceState(null, '', '/network');
loadTenant().then(() => whoami(tenant())).finally(render);
