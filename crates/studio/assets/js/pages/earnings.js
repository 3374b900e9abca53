// Earnings and usage: what each operator earned per closed epoch (the payout tables this
// node computed), the epoch history (status, root, total, poster, transaction), and the
// signed-in tenant's metered usage per resource from the countersigned receipts this node
// holds. Everything comes from the /v1/ledger routes; amounts are base units.

import { h, clear, barChart, bytes, num, shortId, empty, errorBox } from '../ui.js';
import { get } from '../api.js';
import { tenant } from '../tenant.js';

const PALETTE = ['#7c5cff', '#22d3ee', '#f59e0b', '#22c55e', '#ef4444', '#a78bfa', '#f472b6', '#94a3b8'];
// How many epochs of usage to read (one request each).
const USAGE_EPOCHS = 6;
// The resources of a receipt, grouped as the usage charts show them.
const FUEL = { FunctionFuel: ['functions', '#7c5cff'], JobFuel: ['jobs', '#22d3ee'], WorkerFuel: ['workers', '#f59e0b'] };

// Amounts are decimal strings that can exceed 2^53: exact in tables, approximate in charts.
const amount = (text) => Number(text || 0);
const tokens = (v) => num(v, 0);

export function render(root) {
  root.append(h('header.page-head', h('div', h('h1', 'Earnings and usage'),
    h('p.muted', 'Rewards per closed epoch as the network computed them (every node recomputes the same table from countersigned receipts and audits), and your own metered usage.'))));
  const err = h('div');
  const settlementBox = h('div.stack');
  const usageBox = h('div.stack');
  root.append(err, settlementBox, usageBox);
  let alive = true;
  let timer;

  async function refresh() {
    clearTimeout(timer);
    try {
      const status = await get('/v1/ledger/status');
      if (!alive) return;
      clear(err);
      drawSettlement(status);
      await drawUsage(status);
    } catch (e) { if (alive) clear(err, errorBox(e)); }
    if (alive) timer = setTimeout(refresh, 10000);
  }

  function drawSettlement(status) {
    if (!status.enabled) {
      clear(settlementBox, h('section.card#settlement-off',
        h('header.card-head', h('h2', 'Earnings'), h('span.badge.state-suspect', h('span.dot'), 'settlement off')),
        h('div.alert.warn', { role: 'status' }, h('strong', 'Settlement is off on this node. '),
          'It closes no epochs ([settlement] enabled = false), so there are no earnings, roots or claims to show. Usage is still metered: see below.')));
      return;
    }
    // Oldest first, for the chart's axis.
    const epochs = [...status.recent].sort((a, b) => a.epoch - b.epoch);
    const nodeOf = new Map((status.operators || []).map((o) => [o.payout.toLowerCase(), o.node]));
    const accounts = [...new Set(epochs.flatMap((e) => e.payouts.map((p) => p.address)))];
    const series = accounts.map((a, i) => ({
      name: nodeOf.has(a.toLowerCase()) ? `node ${shortId(nodeOf.get(a.toLowerCase()))}` : shortId(a),
      color: PALETTE[i % PALETTE.length],
      values: epochs.map((e) => amount(e.payouts.find((p) => p.address === a)?.amount)),
    }));
    const earned = epochs.reduce((sum, e) => sum + amount(e.total), 0);
    const chart = h('section.card.chart-card#chart-earnings',
      h('header.card-head', h('h2', 'Earnings per epoch'), h('span.muted', `${tokens(earned)} base units in ${epochs.length} epoch${epochs.length === 1 ? '' : 's'}, by operator`)),
      epochs.length ? barChart(epochs.map((e) => e.epoch), series, { format: tokens, label: 'Earnings per epoch by operator' })
        : empty('No epoch closed yet', `An epoch lasts ${status.epoch_seconds} s; its table appears here once this node computed it.`));
    const table = h('section.card',
      h('header.card-head', h('h2', 'Epoch history'), h('span.muted', `committee ${status.threshold} of ${status.members}${status.member ? ', this node is a member' : ''}`)),
      epochs.length ? h('div.table-wrap', h('table.table.compact#epoch-table',
        h('thead', h('tr', ['Epoch', 'Status', 'Root', 'Total', 'Poster', 'Tx'].map((c, i) => h(i === 3 ? 'th.num' : 'th', { scope: 'col' }, c)))),
        h('tbody', [...epochs].reverse().map((e) => h('tr', { 'data-epoch': e.epoch },
          h('td', String(e.epoch)),
          h('td', h(`span.badge.state-${e.status === 'posted' ? 'alive' : 'suspect'}`, h('span.dot'), e.status)),
          h('td', e.root ? h('code', { title: e.root }, shortId(e.root)) : '–'),
          h('td.num', { title: `${e.total} base units` }, e.total),
          h('td', e.poster ? h('code', { title: e.poster }, shortId(e.poster)) : '–'),
          h('td', e.tx_hash ? h('code', { title: e.tx_hash }, shortId(e.tx_hash))
            : e.error && e.status !== 'superseded' && e.status !== 'posted' ? h('span.muted', { title: e.error }, 'failed, retrying') : '–')))))) : null);
    clear(settlementBox, h('div.grid-2', chart, table));
  }

  async function drawUsage(status) {
    const t = tenant();
    if (!t) {
      clear(usageBox, h('section.card#usage', h('header.card-head', h('h2', 'Your usage')),
        empty('No tenant key in this browser', 'Import or generate your tenant key on the Tenant page to see what you used per epoch.', h('a.btn', { href: '/tenant', 'data-link': '' }, 'Go to the Tenant page'))));
      return;
    }
    const current = status.current_epoch;
    const wanted = [];
    for (let e = current; e >= 0 && wanted.length < USAGE_EPOCHS; e--) wanted.push(e);
    wanted.reverse();
    const listings = await Promise.all(wanted.map((e) => get(`/v1/ledger/receipts?epoch=${e}&tenant=${t.tenant}`)));
    if (!alive) return;
    // Receipts are cumulative per (provider, resource): the highest is the epoch's use.
    const use = listings.map((l) => {
      const latest = new Map();
      for (const r of l.receipts) {
        const k = `${r.provider}/${r.resource}`;
        latest.set(k, Math.max(latest.get(k) || 0, r.cumulative));
      }
      const sum = {};
      for (const [k, v] of latest) { const res = k.split('/').pop(); sum[res] = (sum[res] || 0) + v; }
      return sum;
    });
    const count = listings.reduce((a, l) => a + l.receipts.length, 0);
    const of = (res) => use.map((u) => u[res] || 0);
    const head = h('header.card-head', h('h2', 'Your usage'),
      h('span.muted', `tenant ${shortId(t.tenant)} · ${count} countersigned receipt${count === 1 ? '' : 's'} on this node, epochs ${wanted[0]}–${current} (current epoch still counting)`));
    if (!count) {
      clear(usageBox, h('section.card#usage', head, h('div#usage-none', empty('No countersigned receipts of your tenant on this node',
        'A node is paid only for usage its tenant’s edge countersigned: receipts appear here once nodes served you and your edge (the node holding your countersigning grant) signed them. This node shows the receipts it holds as provider or edge.'))));
      return;
    }
    const card = (id, title, sub, chart) => h(`section.card.chart-card#${id}`, h('header.card-head', h('h2', title), h('span.muted', sub)), chart);
    clear(usageBox, h('section.card#usage', head), h('div.chart-grid',
      card('chart-usage-fuel', 'Fuel', 'WebAssembly fuel per epoch', barChart(wanted, Object.entries(FUEL).map(([res, [name, color]]) => ({ name, color, values: of(res) })), { format: (v) => num(v, 0), label: 'Fuel per epoch' })),
      card('chart-usage-requests', 'Requests', 'function calls per epoch', barChart(wanted, [{ name: 'requests', color: '#22c55e', values: of('FunctionRequests') }], { format: (v) => num(v, 0), label: 'Requests per epoch' })),
      card('chart-usage-bytes', 'Bytes', 'served (egress) per epoch; storage in byte-hours', barChart(wanted, [{ name: 'egress', color: '#f472b6', values: of('EgressBytes') }], { format: bytes, label: 'Bytes served per epoch' }),
      )), h('p.muted#usage-storage', `Storage: ${num(of('StorageByteHours').reduce((a, v) => a + v, 0), 0)} byte-hours over these epochs.`));
  }

  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
