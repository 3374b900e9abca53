// Network: every node with its state, zone, capacity and load, grouped by zone, updated
// live from the node's event stream, the measured round trips between nodes, and a
// latency map drawn from the nodes' network coordinates (GET /v1/network/coordinates).

import { h, clear, badge, bytes, ms, num, ago, shortId, meter, empty } from '../ui.js';
import { subscribe, get } from '../api.js';
import { latencyMap } from '../latmap.js';

export function render(root) {
  const head = h('header.page-head',
    h('div', h('h1', 'Network'), h('p.muted', 'Every node this node knows, live. States come from the failure detector; load from the summaries every node gossips or, in a network too large for that, the capacity each node last signed in the registry.')));
  const stats = h('div.stats');
  const zones = h('div.zones', { 'aria-live': 'off' });
  const rtt = h('section.card');
  const map = latencyMap();
  const status = h('div');
  root.append(head, status, stats, zones, map.el, rtt);
  // Coordinates change slowly (a few probes a second): asked every five seconds.
  let stopped = false;
  const refreshMap = async () => {
    if (stopped) return;
    try { map.setCoordinates(await get('/v1/network/coordinates')); }
    catch (e) { map.setError(e); }
    if (!stopped) setTimeout(refreshMap, 5000);
  };
  refreshMap();
  const unsubscribe = subscribe((live) => {
    if (!live.snapshot) {
      clear(status, live.error ? h('div.alert.error', { role: 'alert' }, live.error) : h('p.muted', 'Connecting to the node…'));
      return;
    }
    clear(status, live.connected ? null : h('div.alert.warn', { role: 'status' }, live.error || 'Reconnecting…', ' The figures below are the last ones received.'));
    draw(live.snapshot, stats, zones, rtt);
    map.setSnapshot(live.snapshot);
  });
  return () => { stopped = true; unsubscribe?.(); };
}

function draw(snap, stats, zones, rttBox) {
  const reports = new Map(snap.network.nodes.map((n) => [n.id, n]));
  const nodes = snap.nodes;
  const alive = nodes.filter((n) => n.state === 'alive').length;
  const zoneNames = [...new Set(nodes.map((n) => n.zone || 'unknown zone'))].sort();
  const cores = nodes.filter((n) => n.state === 'alive').reduce((a, n) => a + (n.capacity?.cpu_cores || 0), 0);
  const disk = nodes.filter((n) => n.state === 'alive').reduce((a, n) => a + (n.capacity?.disk_free_bytes || 0), 0);
  const api1m = snap.network.windows?.['1m']?.api;
  clear(stats,
    stat('Nodes alive', `${alive} / ${nodes.length}`, nodes.length - alive ? `${nodes.length - alive} not alive` : 'all healthy', nodes.length - alive ? 'warn' : 'ok'),
    stat('Zones', String(zoneNames.length), zoneNames.join(', ')),
    stat('CPU cores', String(cores), 'on alive nodes'),
    stat('Free disk', bytes(disk), 'on alive nodes'),
    stat('Requests / s', api1m ? num(api1m.requests_per_sec, 2) : '0', api1m ? `p99 ${ms(api1m.latency_ms.p99)} · last minute` : 'none in the last minute'));

  clear(zones, zoneNames.map((zone) => {
    const members = nodes.filter((n) => (n.zone || 'unknown zone') === zone);
    const up = members.filter((n) => n.state === 'alive').length;
    return h('section.zone', { 'aria-label': `Zone ${zone}` },
      h('header.zone-head', h('h2', zone), h('span.muted', `${up} of ${members.length} alive`)),
      h('div.node-grid', members.map((n) => nodeCard(n, reports.get(n.id)))));
  }));

  clear(rttBox, h('header.card-head', h('h2', 'Round-trip times'),
    h('span.muted', 'Smoothed SWIM probe round trips, measured by each node (row) to each peer (column).')),
  rttMatrix(nodes, snap.network.nodes));
}

function stat(label, value, sub, tone = '') {
  return h(`div.stat${tone ? '.' + tone : ''}`, h('div.stat-label', label), h('div.stat-value', value), h('div.stat-sub', sub));
}

function nodeCard(n, report) {
  const c = n.capacity;
  const sys = report?.system;
  const cpuUsed = sys ? sys.cpu_busy_millis / 1000 : c ? (c.cpu_cores * 1000 - c.cpu_free_millis) / 1000 : 0;
  const cores = sys?.cpu_cores || c?.cpu_cores || 0;
  const memUsed = sys ? sys.memory_used_bytes : c ? c.memory_bytes - c.memory_free_bytes : 0;
  const memTotal = sys?.memory_total_bytes || c?.memory_bytes || 0;
  const diskUsed = sys ? sys.disk_used_bytes : c ? c.disk_bytes - c.disk_free_bytes : 0;
  const diskTotal = sys?.disk_total_bytes || c?.disk_bytes || 0;
  const lm = report?.last_minute;
  return h(`article.node.state-${n.state}`, { 'data-node-id': n.id, 'data-state': n.state, tabindex: '0', 'aria-label': `Node ${n.id}, ${n.state}` },
    h('header.node-head',
      h('div', h('div.node-id', { title: n.id }, shortId(n.id), n.is_self ? h('span.tag', 'this node') : null),
        h('div.node-sub', n.api_url ? h('a', { href: n.api_url, rel: 'noopener' }, n.api_url.replace(/^https?:\/\//, '')) : 'no API address', ' · v', n.version || '?')),
      badge(n.state)),
    h('dl.node-figures',
      fig('CPU', `${num(cpuUsed)} / ${cores} cores`, meter(cpuUsed, cores, 'CPU load')),
      fig('Memory', `${bytes(memUsed)} / ${bytes(memTotal)}`, meter(memUsed, memTotal, 'Memory used')),
      fig('Disk', `${bytes(diskUsed)} / ${bytes(diskTotal)}`, meter(diskUsed, diskTotal, 'Disk used'))),
    h('footer.node-foot',
      h('span', { title: 'API requests per second over the last minute' }, lm ? `${num(lm.requests_per_sec, 2)} req/s` : '0 req/s'),
      h('span', { title: 'Round trip from the node answering you' }, n.is_self ? 'local' : n.rtt_ms != null ? `RTT ${ms(n.rtt_ms)}` : 'RTT –'),
      h('span', { title: 'Last heard directly' }, n.is_self ? `inc ${n.incarnation}` : ago(n.last_seen_ms))));
}

function fig(label, value, bar) {
  return h('div.fig', h('dt', label), h('dd', h('span', value), bar));
}

function rttMatrix(nodes, reports) {
  const byId = new Map(reports.map((r) => [r.id, new Map((r.peer_rtts || []).map((p) => [p.node, p.rtt_ms]))]));
  const shown = nodes.filter((n) => n.state === 'alive' || n.state === 'suspect');
  if (shown.length < 2) return empty('Nothing to measure yet', 'Round trips appear once two or more nodes are alive and have probed each other (a few seconds).');
  const max = Math.max(1, ...[...byId.values()].flatMap((m) => [...m.values()]));
  const label = (n) => h('span', { title: n.id }, shortId(n.id), h('small.muted', ` ${n.zone || ''}`));
  return h('div.table-wrap', h('table.matrix',
    h('caption.sr-only', 'Round-trip times in milliseconds between nodes'),
    h('thead', h('tr', h('th', { scope: 'col' }, 'from \\ to'), shown.map((n) => h('th', { scope: 'col' }, label(n))))),
    h('tbody', shown.map((from) => h('tr',
      h('th', { scope: 'row' }, label(from)),
      shown.map((to) => {
        if (from.id === to.id) return h('td.self', '—');
        const v = byId.get(from.id)?.get(to.id);
        if (v == null) return h('td.none', { title: 'not measured yet' }, '·');
        const heat = Math.min(1, v / max);
        return h('td', { style: { '--heat': heat.toFixed(2) }, title: `${shortId(from.id)} → ${shortId(to.id)}: ${ms(v)}` }, ms(v));
      }))))));
}
