// Observability: network-wide requests, errors and latency over time (every node's
// gossiped summaries summed, or beyond `observe_summaries_up_to` nodes the totals summed
// along the observability tree), the slowest and most failing scopes, and per node figures
// (gossiped in a small network, asked of a node at a time in a large one).

import { h, clear, lineChart, ms, num, pct, shortId, empty, errorBox, toast } from '../ui.js';
import { get, subscribe } from '../api.js';

const COLORS = { requests: '#7c5cff', client: '#f59e0b', server: '#ef4444', p50: '#22d3ee', p99: '#a78bfa' };

export function render(root, { params }) {
  const scopeSel = h('select#scope', { 'aria-label': 'Scope' });
  const rangeSel = h('select#range', { 'aria-label': 'Time range' },
    [[15, 'Last 15 minutes'], [60, 'Last hour'], [5, 'Last 5 minutes']].map(([v, l]) => h('option', { value: v }, l)));
  root.append(h('header.page-head',
    h('div', h('h1', 'Observability'), h('p.muted', 'Measured by every node and shared over the mesh: what you see here is the whole network, not just this node.')),
    h('div.controls', h('label', { for: 'scope' }, 'Scope'), scopeSel, h('label', { for: 'range' }, 'Range'), rangeSel)));
  const charts = h('div.chart-grid');
  const tables = h('div.grid-2');
  const nodesBox = h('section.card');
  const err = h('div');
  root.append(err, charts, tables, nodesBox);
  let scope = params[0] || 'api';
  let minutes = 15;
  let alive = true;
  let timer;
  scopeSel.addEventListener('change', () => { scope = scopeSel.value; history.replaceState(null, '', `/observe/${encodeURIComponent(scope)}`); refresh(); });
  rangeSel.addEventListener('change', () => { minutes = Number(rangeSel.value); refresh(); });

  async function refresh() {
    clearTimeout(timer);
    try {
      const series = await get(`/v1/observe/series?scope=${encodeURIComponent(scope)}&minutes=${minutes}`);
      if (!alive) return;
      clear(err);
      drawCharts(series);
    } catch (e) { clear(err, errorBox(e)); }
    if (alive) timer = setTimeout(refresh, 5000);
  }

  function drawCharts(series) {
    const to = series.at_ms, from = to - minutes * 60000;
    const slot = series.slot_ms / 1000;
    const pts = series.points;
    // Every slot of the range, with zeros where nothing happened, so lines are continuous.
    const bySlot = new Map(pts.map((p) => [p.at_ms, p]));
    const slots = [];
    for (let t = from - (from % series.slot_ms); t <= to; t += series.slot_ms) slots.push(t);
    const filled = (f) => slots.map((t) => [t, bySlot.has(t) ? f(bySlot.get(t)) : 0]);
    const rps = filled((p) => p.requests / slot);
    const total = pts.reduce((a, p) => a + p.requests, 0);
    const errors = pts.reduce((a, p) => a + p.server_errors, 0);
    clear(charts,
      chartCard('Requests per second', `${num(total, 0)} requests in range`, lineChart([{ name: 'requests/s', color: COLORS.requests, points: rps }], { from, to, format: (v) => num(v, 1), label: `Requests per second, ${scope}` }), 'chart-requests'),
      chartCard('Errors per 10 s', errors ? `${num(errors, 0)} server errors · ${pct(errors / Math.max(1, total))}` : 'no server errors', lineChart([
        { name: '4xx (client)', color: COLORS.client, points: filled((p) => p.client_errors) },
        { name: '5xx (server)', color: COLORS.server, points: filled((p) => p.server_errors) }], { from, to, format: (v) => num(v, 0), label: `Errors per 10 s, ${scope}`, area: false, integer: true }), 'chart-errors'),
      chartCard('Latency', 'per 10-second slot', lineChart([
        { name: 'p50', color: COLORS.p50, points: pts.map((p) => [p.at_ms, p.latency_ms.p50]) },
        { name: 'p99', color: COLORS.p99, points: pts.map((p) => [p.at_ms, p.latency_ms.p99]) }], { from, to, format: ms, label: `Latency, ${scope}`, area: false }), 'chart-latency'));
  }

  // Beyond `observe_summaries_up_to` live nodes summaries are not gossiped: the snapshot
  // holds this node's figures only, and another node's are asked of it, one at a time.
  const asked = new Map();
  const askSel = h('select#ask-node', { 'aria-label': 'Node to ask for its figures' });
  const askBtn = h('button.btn', { type: 'button' }, 'Ask for its figures');
  const askForm = h('div.controls', h('label', { for: 'ask-node' }, 'Node'), askSel, askBtn);
  // Declared before the subscription below, whose first call may come at once.
  let lastSnap = null;
  askBtn.addEventListener('click', async () => {
    const id = askSel.value;
    if (!id) return;
    askBtn.disabled = true;
    try {
      asked.set(id, await get(`/v1/observe/nodes/${encodeURIComponent(id)}`));
      if (alive && lastSnap) drawNodes(lastSnap);
    } catch (e) { toast(`Node ${shortId(id)}: ${e.message}`, 'error'); }
    finally { askBtn.disabled = false; }
  });

  const unsubscribe = subscribe((live) => {
    if (!live.snapshot) return;
    const windows = live.snapshot.network.windows || {};
    const scopes = new Set(['api', 'storage', ...Object.keys(windows['1h'] || {})]);
    if (![...scopes].some((s) => s === scope)) scopes.add(scope);
    const current = [...scopeSel.options].map((o) => o.value).join();
    const sorted = [...scopes].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (current !== sorted.join()) {
      clear(scopeSel, sorted.map((s) => h('option', { value: s, selected: s === scope }, label(s))));
    }
    drawTables(windows['5m'] || {});
    drawNodes(live.snapshot);
  });

  function drawTables(w) {
    const entries = Object.entries(w).filter(([name, s]) => name !== 'api' && name !== 'storage' && s.requests > 0);
    const slow = [...entries].sort((a, b) => b[1].latency_ms.p99 - a[1].latency_ms.p99).slice(0, 8);
    const failing = [...entries].filter(([, s]) => s.server_errors + s.client_errors > 0)
      .sort((a, b) => b[1].error_rate - a[1].error_rate || (b[1].client_errors - a[1].client_errors)).slice(0, 8);
    clear(tables,
      h('section.card', h('header.card-head', h('h2', 'Slowest'), h('span.muted', 'deployments and buckets by p99, last 5 minutes')),
        slow.length ? scopeTable(slow, ['p50', 'p99', 'req/s'], (s) => [ms(s.latency_ms.p50), ms(s.latency_ms.p99), num(s.requests_per_sec, 2)])
          : empty('No traffic yet', 'Deployments and buckets appear here once they serve requests.')),
      h('section.card', h('header.card-head', h('h2', 'Most failing'), h('span.muted', 'by server error rate, last 5 minutes')),
        failing.length ? scopeTable(failing, ['5xx rate', '5xx', '4xx'], (s) => [pct(s.error_rate), num(s.server_errors, 0), num(s.client_errors, 0)])
          : empty('Nothing is failing', 'No deployment or bucket answered with an error in the last 5 minutes.')));
  }

  function scopeTable(rows, cols, cells) {
    return h('div.table-wrap', h('table.table.compact',
      h('thead', h('tr', h('th', { scope: 'col' }, 'Scope'), cols.map((c) => h('th.num', { scope: 'col' }, c)))),
      h('tbody', rows.map(([name, s]) => h('tr', h('td', h('a', { href: `/observe/${encodeURIComponent(name)}`, onclick: (e) => { e.preventDefault(); scope = name; scopeSel.value = name; history.replaceState(null, '', `/observe/${encodeURIComponent(name)}`); refresh(); } }, label(name))),
        cells(s).map((c) => h('td.num', c)))))));
  }

  function drawNodes(snap) {
    lastSnap = snap;
    const onDemand = snap.network.node_figures === 'on_demand';
    const own = snap.network.nodes;
    const rows = onDemand ? [...own, ...[...asked.values()].filter((n) => !own.some((o) => o.id === n.id))] : own;
    if (onDemand) {
      const others = snap.nodes.filter((n) => !n.is_self && (n.state === 'alive' || n.state === 'suspect')).map((n) => n.id);
      if ([...askSel.options].map((o) => o.value).join() !== others.join()) {
        const chosen = askSel.value;
        clear(askSel, others.map((id) => h('option', { value: id, selected: id === chosen }, shortId(id))));
      }
    }
    const sub = onDemand
      ? 'This network is too large for every node to send its figures to every other: this node\'s own, and those of the nodes you ask'
      : 'API traffic each node served over the last minute';
    clear(nodesBox, h('header.card-head', h('h2', 'Per node'), h('span.muted', sub)),
      onDemand ? askForm : null,
      rows.length ? h('div.table-wrap', h('table.table.compact',
        h('thead', h('tr', ['Node', 'State', 'req/s', 'p99', '5xx', 'CPU busy', 'Tenants', 'As of'].map((c, i) => h(i > 1 ? 'th.num' : 'th', { scope: 'col' }, c)))),
        h('tbody', rows.map((n) => h('tr',
          h('td', h('code', { title: n.id }, shortId(n.id))),
          h('td', n.state),
          h('td.num', num(n.last_minute?.requests_per_sec ?? 0, 2)),
          h('td.num', n.last_minute ? ms(n.last_minute.latency_ms.p99) : '–'),
          h('td.num', num(n.last_minute?.server_errors ?? 0, 0)),
          h('td.num', pct(n.system.cpu_busy_millis / Math.max(1, n.system.cpu_cores * 1000))),
          h('td.num', String(n.active_tenants)),
          h('td.num', new Date(n.reported_at_ms).toLocaleTimeString())))))) : empty('No summaries yet', 'Nodes publish a summary every couple of seconds.'));
  }

  refresh();
  return () => { alive = false; clearTimeout(timer); unsubscribe(); };
}

function rank(s) { return s === 'api' ? 0 : s === 'storage' ? 1 : s.startsWith('deployment') ? 2 : 3; }
function label(s) {
  if (s === 'api') return 'All API requests';
  if (s === 'storage') return 'All storage';
  const [kind, ...rest] = s.split(':');
  return rest.length ? `${kind} · ${rest.join(':')}` : s;
}

function chartCard(title, sub, chart, id) {
  return h('section.card.chart-card', { id }, h('header.card-head', h('h2', title), h('span.muted', sub)), chart);
}
