// The latency map of the Network page: every node drawn at its Vivaldi network coordinate
// (GET /v1/network/coordinates), coloured by zone (fill) and health (outline), with its
// coordinate's height as a ring, the probe round trips measured between nodes as links
// (from the summaries every node gossips, in the live snapshot), and a scale in
// milliseconds. Node ids and zone names come from the network, so they only ever reach
// the page as text nodes and attribute values, never as markup.

import { h, s, clear, ms, num, shortId, empty } from './ui.js';

const ZONE_COLORS = ['#7c5cff', '#22d3ee', '#f59e0b', '#f472b6', '#a3e635', '#38bdf8', '#fb7185', '#c084fc'];
const STATE_COLORS = { alive: '#22c55e', suspect: '#f59e0b', dead: '#ef4444', left: '#94a3b8' };
// The map's drawing area, in SVG units (it scales to the card's width).
const W = 640, H = 360, PAD = 48;
// The smallest span the map zooms to, in milliseconds: on one machine the coordinates lie
// within microseconds of each other, and a smaller span would only magnify noise.
const MIN_SPAN_MS = 0.01;
// Beyond this many links, only the shortest are drawn: a full mesh of a large network
// would hide the nodes.
const MAX_LINKS = 300;

/**
 * Projects vectors onto their two principal axes (power iteration on the covariance), so
 * the 2-D picture keeps as much of the distances as a plane can. Returns [x, y] pairs in
 * the vectors' units. Deterministic: each axis's largest component is made positive, so
 * the picture does not flip between refreshes.
 */
export function project(vectors) {
  const n = vectors.length;
  const d = Math.max(0, ...vectors.map((v) => v.length));
  if (!n || !d) return vectors.map(() => [0, 0]);
  const mean = Array.from({ length: d }, (_, k) => vectors.reduce((a, v) => a + (v[k] || 0), 0) / n);
  const centred = vectors.map((v) => mean.map((m, k) => (v[k] || 0) - m));
  const cov = mean.map((_, i) => mean.map((_, j) => centred.reduce((a, c) => a + c[i] * c[j], 0) / n));
  const axes = [];
  for (let a = 0; a < 2; a++) {
    let v = mean.map((_, k) => 1 / (k + 1 + a));
    let lambda = 0;
    for (let it = 0; it < 100; it++) {
      const w = cov.map((row) => row.reduce((acc, x, k) => acc + x * v[k], 0));
      const norm = Math.hypot(...w);
      if (!(norm > 1e-30)) { lambda = 0; break; }
      lambda = norm;
      v = w.map((x) => x / norm);
    }
    if (!(lambda > 0)) v = mean.map((_, k) => (k === a ? 1 : 0));
    const big = v.reduce((best, x) => (Math.abs(x) > Math.abs(best) ? x : best), 0);
    if (big < 0) v = v.map((x) => -x);
    axes.push(v);
    // Deflate, so the next iteration finds the next axis.
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i][j] -= lambda * v[i] * v[j];
  }
  return centred.map((c) => axes.map((ax) => c.reduce((acc, x, k) => acc + x * ax[k], 0)));
}

// The largest 1, 2 or 5 times a power of ten not above `v`.
function niceFloor(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  const n = v / p;
  return (n >= 5 ? 5 : n >= 2 ? 2 : 1) * p;
}

const finite = (c) => c && Array.isArray(c.vec) && c.vec.every(Number.isFinite) && Number.isFinite(c.height) && Number.isFinite(c.error);

/** The map card: feed it coordinates (every few seconds) and live snapshots (every second). */
export function latencyMap() {
  const el = h('section.card#latency-map', { 'aria-label': 'Latency map' });
  let view = null;
  let snap = null;
  let failure = null;
  let selected = null;
  let drawnStates = '';
  // The last coordinate seen of every node, so that a node that stops answering stays on
  // the map, where it was, in its new state (the coordinate table keeps only live peers).
  const lastSeen = new Map();

  function setCoordinates(v) {
    failure = null;
    view = v;
    if (finite(v.coordinate)) lastSeen.set(v.id, v.coordinate);
    for (const p of v.peers || []) if (finite(p.coordinate)) lastSeen.set(p.id, p.coordinate);
    draw();
  }
  function setError(e) { failure = e; if (!view) draw(); }
  function setSnapshot(sn) {
    snap = sn;
    const states = sn.nodes.map((n) => `${n.id}:${n.state}:${n.zone}`).sort().join(',');
    if (states !== drawnStates && view) draw();
  }

  function draw() {
    const head = h('header.card-head', h('h2', 'Latency map'),
      h('span.muted', 'Nodes placed by their network coordinates: near means a short round trip. Hover or focus a node for its details.'));
    if (!view) {
      clear(el, head, failure ? h('p.muted', `Coordinates unavailable: ${failure.message}`) : h('p.muted', 'Loading coordinates…'));
      return;
    }
    drawnStates = snap ? snap.nodes.map((n) => `${n.id}:${n.state}:${n.zone}`).sort().join(',') : '';
    const known = new Map((snap?.nodes || []).map((n) => [n.id, n]));
    const peers = new Map((view.peers || []).map((p) => [p.id, p]));
    // Nodes the snapshot does not list (it lags a join by a second) are still drawn.
    const ids = [...new Set([view.id, ...peers.keys(), ...[...known.keys()].filter((id) => lastSeen.has(id))])]
      .filter((id) => lastSeen.has(id));
    const unplaced = [...known.values()].filter((n) => !lastSeen.has(n.id));
    if (ids.length < 2) {
      clear(el, head, empty('No coordinates yet', 'Coordinates appear once this node has probed peers that report theirs (a few seconds).'));
      return;
    }
    const points = ids.map((id) => {
      const c = lastSeen.get(id);
      const node = known.get(id);
      const peer = peers.get(id);
      const self = id === view.id;
      return {
        id, self, c,
        zone: node?.zone || '',
        // The table holds only live peers: a node in it that the snapshot does not list yet is alive.
        state: node?.state || (self || peer ? 'alive' : 'dead'),
        measured: self ? 0 : peer?.measured_rtt_ms ?? node?.rtt_ms ?? null,
        estimated: self ? 0 : peer?.estimated_rtt_ms ?? null,
      };
    });
    const xy = project(points.map((p) => p.c.vec.map((x) => x * 1000)));
    const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const spanX = Math.max(MIN_SPAN_MS, maxX - minX), spanY = Math.max(MIN_SPAN_MS, maxY - minY);
    // One scale for both axes, so that a distance means the same in every direction.
    const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
    const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
    points.forEach((p, i) => { p.x = W / 2 + (xs[i] - cx) * scale; p.y = H / 2 + (ys[i] - cy) * scale; });

    const zones = [...new Set(points.map((p) => p.zone))].sort();
    const zoneColor = (z) => (z ? ZONE_COLORS[zones.filter(Boolean).indexOf(z) % ZONE_COLORS.length] : '#94a3b8');
    const byId = new Map(points.map((p) => [p.id, p]));

    // Links: the round trips each node measured to each other, from its gossiped summary.
    const measured = new Map();
    for (const r of snap?.network?.nodes || []) {
      for (const p of r.peer_rtts || []) {
        if (!byId.has(r.id) || !byId.has(p.node) || r.id === p.node || !Number.isFinite(p.rtt_ms)) continue;
        const key = r.id < p.node ? `${r.id} ${p.node}` : `${p.node} ${r.id}`;
        const link = measured.get(key) || { a: byId.get(r.id < p.node ? r.id : p.node), b: byId.get(r.id < p.node ? p.node : r.id), rtts: [] };
        link.rtts.push(p.rtt_ms);
        measured.set(key, link);
      }
    }
    const links = [...measured.values()].map((l) => ({ ...l, rtt: l.rtts.reduce((a, v) => a + v, 0) / l.rtts.length }))
      .sort((x, y) => x.rtt - y.rtt).slice(0, MAX_LINKS);
    const slowest = Math.max(1e-9, ...links.map((l) => l.rtt));

    // The scale bar: a round number of milliseconds, about a quarter of the width.
    const barMs = niceFloor((W - 2 * PAD) / scale / 4);
    const barPx = barMs * scale;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'latmap', role: 'group', 'aria-label': `Latency map of ${points.length} nodes` },
      s('g', { class: 'latmap-links' }, links.map((l) => s('line', {
        x1: l.a.x.toFixed(1), y1: l.a.y.toFixed(1), x2: l.b.x.toFixed(1), y2: l.b.y.toFixed(1),
        class: 'latmap-link', 'stroke-opacity': (0.75 - 0.5 * (l.rtt / slowest)).toFixed(2), 'data-rtt-ms': l.rtt.toFixed(3),
      }, s('title', {}, `${shortId(l.a.id)} ↔ ${shortId(l.b.id)}: measured ${l.rtts.map(ms).join(' / ')}`)))),
      s('g', { class: 'latmap-scale', 'aria-hidden': 'true' },
        s('line', { x1: PAD, x2: (PAD + barPx).toFixed(1), y1: H - 18, y2: H - 18 }),
        s('line', { x1: PAD, x2: PAD, y1: H - 22, y2: H - 14 }),
        s('line', { x1: (PAD + barPx).toFixed(1), x2: (PAD + barPx).toFixed(1), y1: H - 22, y2: H - 14 }),
        s('text', { x: (PAD + barPx + 6).toFixed(1), y: H - 14 }, `${ms(barMs)} round trip`)),
      points.map((p) => marker(p, zoneColor(p.zone), scale)));
    const detail = h('div.latmap-detail#map-detail', { 'aria-live': 'polite' });
    const show = (p) => { selected = p.id; fillDetail(detail, p, view.id); };
    svg.addEventListener('mouseover', (e) => { const g = e.target.closest?.('[data-map-node]'); if (g) show(byId.get(g.getAttribute('data-map-node'))); });
    svg.addEventListener('focusin', (e) => { const g = e.target.closest?.('[data-map-node]'); if (g) show(byId.get(g.getAttribute('data-map-node'))); });
    show(byId.get(selected) || byId.get(view.id));

    const legend = h('div.legend.latmap-legend',
      zones.map((z) => h('span.legend-item', h('span.swatch', { style: { background: zoneColor(z) } }), z || 'no zone')),
      Object.entries(STATE_COLORS).map(([st, color]) => h('span.legend-item', h('span.swatch.ring', { style: { borderColor: color } }), st)),
      h('span.legend-item.muted', 'dashed ring: height (access-link delay) · lines: measured round trips'));
    clear(el, head, h('div.latmap-wrap', svg, detail), legend,
      unplaced.length ? h('p.muted.latmap-unplaced', 'Not placed yet (no coordinate known): ', unplaced.map((n) => `${shortId(n.id)} (${n.state})`).join(', ')) : null);
  }

  return { el, setCoordinates, setError, setSnapshot };
}

function marker(p, fill, scale) {
  const r = p.self ? 9 : 7;
  const heightMs = Math.max(0, p.c.height * 1000);
  const ring = Math.min(40, r + 3 + heightMs * scale);
  const tip = [
    p.id + (p.self ? ' (this node)' : ''),
    `zone ${p.zone || '–'} · ${p.state}`,
    `coordinate error ${num(p.c.error * 100, 1)} % · height ${ms(heightMs)}`,
    p.self ? 'serves this Studio' : `RTT to this node: measured ${p.measured != null ? ms(p.measured) : '–'}, estimated ${p.estimated != null ? ms(p.estimated) : '–'}`,
  ].join('\n');
  return s('g', {
    class: `latmap-node state-${p.state}${p.self ? ' self' : ''}`, tabindex: '0', 'data-map-node': p.id, 'data-zone': p.zone, 'data-state': p.state,
    'data-x': p.x.toFixed(1), 'data-y': p.y.toFixed(1), 'aria-label': tip.replace(/\n/g, '; '),
  },
  s('title', {}, tip),
  s('circle', { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: ring.toFixed(1), class: 'latmap-height' }),
  s('circle', { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r, fill, stroke: STATE_COLORS[p.state] || STATE_COLORS.left, class: 'latmap-dot' }),
  // Labels of nodes in the right half go on their left, so they stay inside the map.
  s('text', { x: (p.x > W / 2 ? p.x - ring - 4 : p.x + ring + 4).toFixed(1), y: (p.y + 4).toFixed(1), 'text-anchor': p.x > W / 2 ? 'end' : 'start', class: 'latmap-label' },
    p.self ? `${shortId(p.id)} · this node` : shortId(p.id)));
}

function fillDetail(box, p, selfId) {
  if (!p) return;
  const row = (label, value, attrs = {}) => [h('dt', label), h('dd', attrs, value)];
  clear(box, h('dl.kv',
    row('Node', h('code', { title: p.id }, p.id), { 'data-field': 'id' }),
    row('Zone', p.zone || '–', { 'data-field': 'zone' }),
    row('State', p.state, { 'data-field': 'state' }),
    row('Coordinate error', `${num(p.c.error * 100, 1)} %`, { 'data-field': 'error' }),
    row('Height', ms(Math.max(0, p.c.height * 1000)), { 'data-field': 'height' }),
    p.id === selfId ? row('RTT to this node', 'it serves this Studio', { 'data-field': 'rtt' })
      : row('RTT to this node', p.measured != null ? `${ms(p.measured)} measured · ${p.estimated != null ? ms(p.estimated) : '–'} estimated` : 'not measured yet',
        { 'data-field': 'rtt', 'data-rtt-ms': p.measured != null ? String(p.measured) : null })));
}
