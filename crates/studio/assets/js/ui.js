// Small DOM helpers, formatting and the hand-drawn SVG charts.

const SVG = 'http://www.w3.org/2000/svg';

/** Creates an element: h('div.card#id', {attrs}, ...children). */
export function h(spec, attrs, ...children) {
  if (attrs == null || typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs); attrs = {};
  }
  const [, tag = 'div', rest = ''] = spec.match(/^([a-z0-9-]*)(.*)$/i);
  const el = document.createElement(tag || 'div');
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style' && typeof v === 'object') {
      for (const [prop, val] of Object.entries(v)) {
        if (prop.startsWith('--')) el.style.setProperty(prop, val); else el.style[prop] = val;
      }
    }
    else el.setAttribute(k, v === true ? '' : v);
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, v);
  append(el, children);
  return el;
}

export function clear(el, ...children) { el.replaceChildren(); append(el, children); return el; }

export function icon(name) {
  const paths = {
    network: 'M12 3a3 3 0 1 1 0 6 3 3 0 0 1 0-6zM5 15a3 3 0 1 1 0 6 3 3 0 0 1 0-6zm14 0a3 3 0 1 1 0 6 3 3 0 0 1 0-6zM12 9v3m0 0-5 4m5-4 5 4',
    deploy: 'M4 7l8-4 8 4-8 4-8-4zm0 5l8 4 8-4M4 17l8 4 8-4',
    storage: 'M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3zm0 0v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3',
    observe: 'M3 20h18M6 16l4-6 4 3 5-8',
    key: 'M15 7a4 4 0 1 1-3.9 5H3v3h3v3h3v-3h2.1A4 4 0 0 1 15 7zm1 2.5h.01',
    upload: 'M12 16V4m0 0-4 4m4-4 4 4M4 16v3h16v-3',
    download: 'M12 4v12m0 0-4-4m4 4 4-4M4 16v3h16v-3',
    trash: 'M5 7h14M10 7V4h4v3m-7 0 1 13h8l1-13',
    plus: 'M12 5v14M5 12h14',
    close: 'M6 6l12 12M18 6 6 18',
    info: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM12 8h.01M11 12h1v4h1',
    folder: 'M3 6h6l2 2h10v11H3z',
    file: 'M6 3h8l4 4v14H6zM14 3v4h4',
    coins: 'M4 7c0-1.7 2.7-3 6-3s6 1.3 6 3-2.7 3-6 3-6-1.3-6-3zm0 0v5c0 1.7 2.7 3 6 3m-6-3v5c0 1.7 2.7 3 6 3s6-1.3 6-3m0-10v3m-2 2c0-1.7 2.7-3 6-3',
  };
  return s('svg', { viewBox: '0 0 24 24', class: 'icon', 'aria-hidden': 'true', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.8', 'stroke-linecap': 'round', 'stroke-linejoin': 'round' },
    s('path', { d: paths[name] || '' }));
}

// ----- formatting --------------------------------------------------------------------------

export function bytes(n) {
  if (n == null || isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
export const pct = (x) => (x == null || isNaN(x) ? '–' : `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)}%`);
export const ms = (x) => (x == null || isNaN(x) ? '–' : x < 1 ? `${(x * 1000).toFixed(0)} µs` : x < 100 ? `${x.toFixed(1)} ms` : `${Math.round(x)} ms`);
// SI prefixes for large counts (fuel and token base units reach 10^12 and more).
const SI = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
export const num = (x, d = 1) => {
  if (x == null || isNaN(x)) return '–';
  if (Math.abs(x) < 1000) return x % 1 === 0 ? String(x) : x.toFixed(d);
  let scaled = x;
  let prefix = 0;
  while (Math.abs(scaled) >= 1000 && prefix < SI.length - 1) {
    scaled /= 1000;
    prefix += 1;
  }
  return `${scaled.toFixed(1)}${SI[prefix]}`;
};
export function ago(msTime) {
  if (!msTime) return 'never';
  const s = Math.max(0, Math.round((Date.now() - msTime) / 1000));
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
export const shortId = (id) => (id ? `${id.slice(0, 8)}…${id.slice(-4)}` : '–');
export const time = (msTime) => new Date(msTime).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

// ----- building blocks ---------------------------------------------------------------------

export function badge(state) {
  return h(`span.badge.state-${state}`, h('span.dot', { 'aria-hidden': 'true' }), state);
}

export function empty(title, text, ...actions) {
  return h('div.empty', h('p.empty-title', title), text && h('p.muted', text), actions.length ? h('div.actions', actions) : null);
}

export function errorBox(err) {
  const message = err && err.message ? err.message : String(err);
  const hint = err && err.code === 'unreachable' ? ' Check that the node is running.'
    : err && (err.code === 'bad_signature' || err.code === 'unauthenticated') ? ' Your tenant key may be wrong: see the Tenant page.'
      : err && err.code === 'stale_request' ? " Your computer's clock is off: requests are signed with the time." : '';
  return h('div.alert.error', { role: 'alert' }, h('strong', 'Something went wrong. '), message + hint);
}

export function meter(used, total, label) {
  const ratio = total > 0 ? Math.min(1, used / total) : 0;
  const level = ratio > 0.9 ? 'high' : ratio > 0.7 ? 'mid' : 'low';
  return h('div.meter', { role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(ratio * 100)), 'aria-label': label },
    h(`div.meter-fill.${level}`, { style: { width: `${(ratio * 100).toFixed(1)}%` } }));
}

let toastBox;
export function toast(message, kind = 'ok') {
  if (!toastBox) { toastBox = h('div.toasts', { role: 'status', 'aria-live': 'polite' }); document.body.append(toastBox); }
  const t = h(`div.toast.${kind}`, message);
  toastBox.append(t);
  setTimeout(() => t.classList.add('out'), 3500);
  setTimeout(() => t.remove(), 4000);
}

/** A modal dialog; returns { close }. `content` is a node, `onClose` is optional. */
export function dialog(title, content, onClose) {
  const d = h('dialog.modal', { 'aria-label': title },
    h('header.modal-head', h('h2', title), h('button.icon-btn', { type: 'button', 'aria-label': 'Close', onclick: () => close() }, icon('close'))),
    h('div.modal-body', content));
  const close = () => { d.close(); d.remove(); onClose && onClose(); };
  d.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
  document.body.append(d);
  d.showModal();
  return { close, el: d };
}

// ----- charts ------------------------------------------------------------------------------

// The top of the axis: four equal steps of 1, 2, 2.5 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const raw = v / 4;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / p;
  return 4 * (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * p;
}

/**
 * A line/area chart of time series. series: [{ name, color, points: [[t, v], ...] }].
 * opts: { from, to, height, format, label } (times in ms).
 */
export function lineChart(series, { from, to, height = 190, format = num, label = 'chart', area = true, integer = false } = {}) {
  const W = 400, H = height, L = 46, R = 10, T = 10, B = 26;
  const all = series.flatMap((sr) => sr.points);
  const top = Math.max(0, ...all.map((p) => p[1]));
  const max = integer ? Math.max(4, niceMax(top)) : niceMax(top);
  const x = (t) => L + ((t - from) / Math.max(1, to - from)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: i ? 'grid' : 'grid base' }),
      s('text', { x: L - 6, y: y(v) + 3.5, class: 'axis', 'text-anchor': 'end' }, format(v)));
  }
  for (let i = 0; i <= 3; i++) {
    const t = from + ((to - from) * i) / 3;
    svg.append(s('text', { x: x(t), y: H - 8, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle' },
      new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
  }
  for (const sr of series) {
    if (!sr.points.length) continue;
    const d = sr.points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    if (area && sr.points.length > 1) {
      const first = sr.points[0], last = sr.points[sr.points.length - 1];
      svg.append(s('path', { d: `${d}L${x(last[0]).toFixed(1)},${y(0)}L${x(first[0]).toFixed(1)},${y(0)}Z`, fill: sr.color, class: 'area' }));
    }
    svg.append(s('path', { d, stroke: sr.color, class: 'line' }));
    for (const p of sr.points) {
      if (p[1] === 0 && sr.points.length > 1) continue;
      svg.append(s('circle', { cx: x(p[0]), cy: y(p[1]), r: 2.2, fill: sr.color, class: 'pt' },
        s('title', {}, `${sr.name}: ${format(p[1])} at ${new Date(p[0]).toLocaleTimeString()}`)));
    }
  }
  const legend = h('div.legend', series.map((sr) => h('span.legend-item', h('span.swatch', { style: { background: sr.color } }), sr.name)));
  const wrap = h('figure.chart-wrap', svg, legend);
  if (!all.some((p) => p[1] > 0)) wrap.append(h('div.chart-empty', 'Nothing in this period yet.'));
  return wrap;
}

/**
 * Stacked bars, one per category (an epoch, say). series: [{ name, color, values: [...] }],
 * each value for the category at the same index. opts: { height, format, label }.
 */
export function barChart(categories, series, { height = 190, format = num, label = 'chart' } = {}) {
  const W = 400, H = height, L = 46, R = 10, T = 10, B = 26;
  const totals = categories.map((_, i) => series.reduce((a, sr) => a + (sr.values[i] || 0), 0));
  // With nothing to draw, an axis of 0 to 4 keeps whole-number labels distinct.
  const max = totals.some((t) => t > 0) ? niceMax(Math.max(...totals)) : 4;
  const slot = (W - L - R) / Math.max(1, categories.length);
  const bar = Math.max(4, Math.min(36, slot * 0.6));
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: i ? 'grid' : 'grid base' }),
      s('text', { x: L - 6, y: y(v) + 3.5, class: 'axis', 'text-anchor': 'end' }, format(v)));
  }
  const every = Math.max(1, Math.ceil(categories.length / 8));
  categories.forEach((c, i) => {
    const cx = L + slot * i + slot / 2;
    if (i % every === 0) svg.append(s('text', { x: cx, y: H - 8, class: 'axis', 'text-anchor': 'middle' }, String(c)));
    let base = 0;
    for (const sr of series) {
      const v = sr.values[i] || 0;
      if (v <= 0) continue;
      svg.append(s('rect', { x: (cx - bar / 2).toFixed(1), y: y(base + v).toFixed(1), width: bar.toFixed(1), height: Math.max(0.5, y(base) - y(base + v)).toFixed(1), fill: sr.color, class: 'bar' },
        s('title', {}, `${sr.name} · ${c}: ${format(v)}`)));
      base += v;
    }
  });
  const legend = h('div.legend', series.map((sr) => h('span.legend-item', h('span.swatch', { style: { background: sr.color } }), sr.name)));
  const wrap = h('figure.chart-wrap', svg, legend);
  if (!totals.some((t) => t > 0)) wrap.append(h('div.chart-empty', 'Nothing in these epochs.'));
  return wrap;
}
