// Deployments: WebAssembly functions, jobs and workers. Create one from an uploaded module
// and a form (or a JSON manifest), see its replicas and the nodes running them, its
// requests, errors and latency over time, its recent logs; scale it; delete it.

import { h, clear, icon, badge, bytes, ago, ms, num, pct, shortId, empty, errorBox, toast, dialog, lineChart } from '../ui.js';
import { get, signed, liveState, subscribe } from '../api.js';
import { tenant, signEntry, keyChecks } from '../tenant.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const KINDS = { http: 'HTTP function', worker: 'Worker', job: 'Job' };

export function render(root, { params, navigate }) {
  const t = tenant();
  if (!t) {
    root.append(head(), empty('No tenant key in this browser', 'Deployments belong to a tenant key. Create one, or import the key file the CLI uses.',
      h('a.btn.primary', { href: '/tenant', 'data-link': '' }, icon('key'), 'Set up a tenant key')));
    return null;
  }
  return params[0] ? detail(root, params[0], navigate) : list(root, navigate);
}

function head(...actions) {
  return h('header.page-head', h('div', h('h1', 'Deployments'),
    h('p.muted', 'WebAssembly functions, jobs and workers, placed on nodes automatically and moved when a node dies.')),
  actions.length ? h('div.controls', actions) : null);
}

function list(root, navigate) {
  const box = h('section.card', h('p.muted.pad', 'Loading deployments…'));
  root.append(head(h('button.btn.primary', { type: 'button', onclick: () => createDialog(navigate) }, icon('plus'), 'New deployment')), box);
  let alive = true;
  let timer;
  const load = async () => {
    let deployments;
    try { deployments = await signed('GET', '/v1/deployments'); } catch (e) {
      clear(box, e.status === 404 ? empty('Compute is not available on this node', 'This node\'s API has no deployments route.') : errorBox(e));
      return;
    }
    if (!alive) return;
    const windows = liveState().snapshot?.network?.windows?.['5m'] || {};
    if (!deployments.length) {
      clear(box, empty('No deployments yet', 'Upload a WebAssembly module (a wasi:http component for a function, a WASI command for a job or worker) and choose how many replicas to run.',
        h('button.btn.primary', { type: 'button', onclick: () => createDialog(navigate) }, icon('plus'), 'Deploy a module')));
    } else {
      clear(box, h('div.table-wrap', h('table.table',
        h('caption.sr-only', 'Your deployments'),
        h('thead', h('tr', ['Name', 'Kind', 'Replicas', 'Requests/s', 'p99', '5xx', 'Module'].map((c, i) => h(i >= 3 && i <= 5 ? 'th.num' : 'th', { scope: 'col' }, c)))),
        h('tbody', deployments.sort((a, b) => a.name.localeCompare(b.name)).map((d) => {
          const w = windows[`deployment:${d.name}`];
          const running = d.replicas.filter((r) => r.state === 'running').length;
          return h('tr', { 'data-deployment': d.name },
            h('td', h('a', { href: `/deployments/${encodeURIComponent(d.name)}`, 'data-link': '' }, h('strong', d.name))),
            h('td', h('span.kind', KINDS[d.kind] || d.kind)),
            h('td', replicaBadge(running, d.replicas_wanted, d.kind)),
            h('td.num', w ? num(w.requests_per_sec, 2) : '0'),
            h('td.num', w ? ms(w.latency_ms.p99) : '–'),
            h('td.num', w ? pct(w.error_rate) : '–'),
            h('td', h('code', { title: d.module }, d.module.slice(0, 12))));
        })))));
    }
    timer = setTimeout(load, 3000);
  };
  load();
  return () => { alive = false; clearTimeout(timer); };
}

function replicaBadge(running, wanted, kind) {
  if (kind === 'job') return h('span.muted', 'on demand');
  const state = running >= wanted ? 'alive' : running > 0 ? 'suspect' : 'dead';
  return h(`span.badge.state-${state}`, h('span.dot'), `${running} / ${wanted} running`);
}

// ----- create ------------------------------------------------------------------------------

function createDialog(navigate) {
  const file = h('input#dep-module', { type: 'file', accept: '.wasm,application/wasm', required: true });
  const name = h('input#dep-name', { required: true, autocomplete: 'off', placeholder: 'hello', pattern: '[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?' });
  const kind = h('select#dep-kind', Object.entries(KINDS).map(([v, l]) => h('option', { value: v }, l)));
  const replicas = h('input#dep-replicas', { type: 'number', min: 1, max: 64, value: 2, required: true });
  const memory = h('input#dep-memory', { type: 'number', min: 1, max: 4096, placeholder: 'node default' });
  const timeout = h('input#dep-timeout', { type: 'number', min: 1, placeholder: 'node default' });
  const env = h('textarea#dep-env', { rows: 3, placeholder: 'GREETING=hello', spellcheck: 'false' });
  const hosts = h('input#dep-hosts', { placeholder: 'api.example.com, *.example.org', autocomplete: 'off' });
  const manifest = h('textarea#dep-manifest', { rows: 6, spellcheck: 'false', placeholder: '{ "limits": { "fuel": 100000000 } }' });
  const progress = h('div');
  const err = h('div');
  kind.addEventListener('change', () => { if (kind.value === 'job') replicas.value = 1; replicas.disabled = kind.value === 'job'; });
  const form = h('form.form.wide', { onsubmit: async (e) => {
    e.preventDefault();
    clear(err);
    if (!NAME_RE.test(name.value)) { clear(err, h('div.alert.error', 'Names are 1 to 63 lower-case letters, digits or dashes, not starting or ending with a dash.')); return; }
    if (!file.files[0]) { clear(err, h('div.alert.error', 'Choose the module file (.wasm) to deploy.')); return; }
    const btn = form.querySelector('button[type=submit]'); btn.disabled = true;
    try {
      let extra = {};
      if (manifest.value.trim()) {
        try { extra = JSON.parse(manifest.value); } catch (x) { throw new Error(`the manifest is not valid JSON: ${x.message}`); }
      }
      clear(progress, h('p.muted', `Uploading the module (${bytes(file.files[0].size)})…`));
      const mod = await signed('POST', '/v1/modules', { body: file.files[0], headers: { 'content-type': 'application/wasm' } });
      clear(progress, h('p.muted', `Module ${mod.module.slice(0, 12)}… stored. Signing the deployment…`));
      const spec = {
        v: 1, name: name.value, kind: kind.value, module: mod.module,
        replicas: kind.value === 'job' ? 1 : Number(replicas.value),
        ...extra,
      };
      const limits = { ...(extra.limits || {}) };
      if (memory.value) limits.memory_mb = Number(memory.value);
      if (timeout.value) limits.timeout_ms = Number(timeout.value);
      if (Object.keys(limits).length) spec.limits = limits;
      const envs = Object.fromEntries(env.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
        const i = l.indexOf('='); if (i < 1) throw new Error(`environment line "${l}" is not NAME=value`);
        return [l.slice(0, i), l.slice(i + 1)];
      }));
      if (Object.keys(envs).length) spec.env = { ...(extra.env || {}), ...envs };
      const allowed = hosts.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (allowed.length) spec.allowed_hosts = allowed;
      await deploy(spec);
      d.close();
      toast(`Deployed ${spec.name}`);
      navigate(`/deployments/${encodeURIComponent(spec.name)}`);
    } catch (x) { clear(progress); clear(err, errorBox(x)); btn.disabled = false; }
  } },
  h('label', { for: 'dep-module' }, 'Module'), file,
  h('p.help', 'A wasi:http component for an HTTP function; a WASI command for a worker or job. At most 32 MiB.'),
  h('div.form-row',
    h('div', h('label', { for: 'dep-name' }, 'Name'), name),
    h('div', h('label', { for: 'dep-kind' }, 'Kind'), kind),
    h('div', h('label', { for: 'dep-replicas' }, 'Replicas'), replicas)),
  h('details.advanced', h('summary', 'Limits, environment and manifest'),
    h('div.form-row',
      h('div', h('label', { for: 'dep-memory' }, 'Memory (MiB)'), memory),
      h('div', h('label', { for: 'dep-timeout' }, 'Timeout (ms)'), timeout)),
    h('label', { for: 'dep-env' }, 'Environment (NAME=value per line)'), env,
    h('label', { for: 'dep-hosts' }, 'Outbound HTTP allowed to'), hosts,
    h('label', { for: 'dep-manifest' }, 'Manifest fields (JSON, merged into the deployment record)'), manifest,
    h('p.help', 'For example limits (fuel, memory_mb, timeout_ms, max_output_kb), args, placement ({"zones": ["zone-a"]}) or storage ({"bucket": "…", "buckets": ["…"]}: the only buckets the deployment may use).')),
  progress, err,
  h('div.actions', h('button.btn.primary', { type: 'submit' }, icon('upload'), 'Deploy')));
  const d = dialog('New deployment', form);
  file.focus();
}

/** Signs and submits a deployment record (create, update or scale). A storage scope is
 * signed with the key checks of its buckets (`bucket`, any `buckets` listed, and those the
 * record already had), without which nodes give the deployment no key. */
async function deploy(spec) {
  if (spec.storage) {
    const { bucket, buckets = [], key_checks: had = {} } = spec.storage;
    spec = { ...spec, storage: { bucket, key_checks: keyChecks([bucket, ...buckets, ...Object.keys(had)]) } };
  }
  const record = JSON.stringify({ ...spec, owner: tenant().tenant, created_ms: spec.created_ms || Date.now() });
  const sig = await signEntry(`tenant/${tenant().tenant}/deployment/${spec.name}`, record);
  return signed('POST', '/v1/deployments', { json: { record, ...sig }, dataKey: true });
}

// ----- detail ------------------------------------------------------------------------------

function detail(root, name, navigate) {
  const title = h('div', h('p.crumbs', h('a', { href: '/deployments', 'data-link': '' }, 'Deployments'), ' / '), h('h1', name));
  const actions = h('div.controls');
  const summary = h('div');
  const charts = h('div.chart-grid');
  const replicas = h('section.card');
  const logs = h('section.card');
  root.append(h('header.page-head', title, actions), summary, charts, replicas, logs);
  let alive = true;
  let timer;
  let current = null;
  // Kept across refreshes, so the answer to "Send a request" stays on screen.
  const out = h('pre.code.try', { hidden: true, 'aria-live': 'polite' });

  const load = async () => {
    try {
      current = await get(`/v1/deployments/${encodeURIComponent(name)}`);
    } catch (e) {
      clear(summary, e.status === 404 ? empty(`No deployment named ${name}`, 'It may have been deleted.', h('a.btn', { href: '/deployments', 'data-link': '' }, 'All deployments')) : errorBox(e));
      clear(charts); clear(replicas); clear(logs); clear(actions);
      return;
    }
    if (!alive) return;
    drawSummary(); drawReplicas();
    loadCharts(); loadLogs();
    timer = setTimeout(load, 3000);
  };

  function drawSummary() {
    const d = current;
    const running = d.replicas.filter((r) => r.state === 'running').length;
    const scale = h('input#scale', { type: 'number', min: 1, max: 64, value: d.replicas_wanted, 'aria-label': 'Replicas', disabled: d.kind === 'job' });
    if (!actions.childElementCount) {
      clear(actions,
        d.kind !== 'job' ? h('form.inline', { onsubmit: async (e) => {
          e.preventDefault();
          const n = Number(scale.value);
          if (!(n >= 1 && n <= 64)) { toast('Replicas must be 1 to 64', 'error'); return; }
          try { await deploy({ ...current.spec, replicas: n }); toast(`${name} scaled to ${n}`); load(); }
          catch (x) { toast(`Scaling failed: ${x.message}`, 'error'); }
        } }, h('label', { for: 'scale' }, 'Replicas'), scale, h('button.btn.small', { type: 'submit' }, 'Scale')) : null,
        h('button.btn.small.danger-ghost', { type: 'button', onclick: async () => {
          if (!confirm(`Delete the deployment ${name}? Its replicas stop everywhere.`)) return;
          try {
            const sig = await signEntry(`tenant/${tenant().tenant}/deployment/${name}`, null);
            await signed('DELETE', `/v1/deployments/${encodeURIComponent(name)}`, { json: sig });
            toast(`Deleted ${name}`); navigate('/deployments', true);
          } catch (x) { toast(`Delete failed: ${x.message}`, 'error'); }
        } }, icon('trash'), 'Delete'));
    }
    const url = d.url_path ? `${location.origin}${d.url_path}` : null;
    clear(summary, h('section.card', h('dl.kv',
      h('dt', 'Kind'), h('dd', KINDS[d.kind] || d.kind),
      h('dt', 'Replicas'), h('dd', replicaBadge(running, d.replicas_wanted, d.kind)),
      url ? [h('dt', 'URL'), h('dd', h('a#fn-url', { href: url, target: '_blank', rel: 'noopener' }, url), h('button.btn.small', { type: 'button', onclick: async () => {
        out.hidden = false; out.textContent = `GET ${d.url_path} …`;
        const started = performance.now();
        try {
          const res = await fetch(d.url_path);
          const text = await res.text();
          out.textContent = `${res.status} ${res.statusText} in ${Math.round(performance.now() - started)} ms\n\n${text.slice(0, 2000)}`;
        } catch (x) { out.textContent = `failed: ${x.message}`; }
      } }, 'Send a request'), h('span.muted', 'served by any node: it forwards to a replica'))] : null,
      h('dt', 'Module'), h('dd', h('code.break', d.module)),
      h('dt', 'Owner'), h('dd', h('code', { title: d.owner }, shortId(d.owner)))), out));
  }

  function drawReplicas() {
    const nodes = new Map((liveState().snapshot?.nodes || []).map((n) => [n.id, n]));
    const d = current;
    clear(replicas, h('header.card-head', h('h2', 'Replicas'), h('span.muted', d.kind === 'job' ? 'jobs run on demand' : `placement: ${d.placement.map(shortId).join(', ') || 'none'}`)),
      d.replicas.length ? h('div.table-wrap', h('table.table.compact',
        h('thead', h('tr', ['Node', 'Zone', 'State', 'Since', 'Restarts', 'Health'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', d.replicas.map((r) => {
          const n = nodes.get(r.node);
          return h('tr', { 'data-replica-node': r.node },
            h('td', h('code', { title: r.node }, shortId(r.node))),
            h('td', n?.zone || '–'),
            h('td', h(`span.badge.state-${r.state === 'running' ? 'alive' : r.state === 'starting' ? 'suspect' : 'dead'}`, h('span.dot'), r.state)),
            h('td.muted', ago(r.since_ms)),
            h('td', String(r.restarts)),
            h('td', r.degraded ? h('span.badge.state-suspect', h('span.dot'), 'degraded') : n && n.state !== 'alive' ? badge(n.state) : h('span.muted', 'ok')));
        })))) : empty('No replica reported yet', d.kind === 'job' ? 'A job runs when you submit it.' : 'Nodes start replicas within seconds of a deployment.'));
  }

  async function loadCharts() {
    let series;
    try { series = await get(`/v1/observe/series?scope=${encodeURIComponent(`deployment:${name}`)}&minutes=15`); } catch { return; }
    if (!alive) return;
    const to = series.at_ms, from = to - 15 * 60000;
    const bySlot = new Map(series.points.map((p) => [p.at_ms, p]));
    const slots = [];
    for (let t = from - (from % series.slot_ms); t <= to; t += series.slot_ms) slots.push(t);
    const filled = (f) => slots.map((t) => [t, bySlot.has(t) ? f(bySlot.get(t)) : 0]);
    const lat = (k) => series.points.map((p) => [p.at_ms, p.latency_ms[k]]);
    const total = series.points.reduce((a, p) => a + p.requests, 0);
    clear(charts,
      h('section.card.chart-card#chart-requests', h('header.card-head', h('h2', 'Requests per second'), h('span.muted', `${num(total, 0)} in 15 min`)),
        lineChart([{ name: 'requests/s', color: '#7c5cff', points: filled((p) => p.requests / (series.slot_ms / 1000)) }], { from, to, label: `Requests per second of ${name}` })),
      h('section.card.chart-card#chart-errors', h('header.card-head', h('h2', 'Errors per 10 s')),
        lineChart([{ name: '4xx', color: '#f59e0b', points: filled((p) => p.client_errors) }, { name: '5xx', color: '#ef4444', points: filled((p) => p.server_errors) }], { from, to, area: false, integer: true, format: (v) => num(v, 0), label: `Errors of ${name}` })),
      h('section.card.chart-card#chart-latency', h('header.card-head', h('h2', 'Latency')),
        lineChart([{ name: 'p50', color: '#22d3ee', points: lat('p50') }, { name: 'p99', color: '#a78bfa', points: lat('p99') }], { from, to, area: false, format: ms, label: `Latency of ${name}` })));
  }

  async function loadLogs() {
    let lines;
    try { lines = await signed('GET', `/v1/deployments/${encodeURIComponent(name)}/logs`); }
    catch (e) { clear(logs, h('header.card-head', h('h2', 'Recent logs')), errorBox(e)); return; }
    if (!alive) return;
    const recent = lines.slice(-200).reverse();
    clear(logs, h('header.card-head', h('h2', 'Recent logs'), h('span.muted', 'newest first, from every node running it')),
      recent.length ? h('div.logs', { role: 'log' }, recent.map((l) => h(`div.log-line.${l.stream}`,
        h('time', new Date(l.ts_ms).toLocaleTimeString()), h('code.log-node', { title: l.node }, shortId(l.node)), h('span.log-stream', l.stream), h('span.log-msg', l.message))))
        : empty('No log lines yet', 'Requests, guest output and lifecycle events appear here.'));
  }

  load();
  const unsub = subscribe(() => { if (current) drawReplicas(); });
  return () => { alive = false; clearTimeout(timer); unsub(); };
}
