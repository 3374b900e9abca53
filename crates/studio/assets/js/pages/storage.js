// Storage: the tenant's buckets and objects. Uploads show progress, downloads are
// decrypted by the node from the data key the browser sends, and object details show
// where every chunk's replicas are.

import { h, clear, icon, bytes, ago, shortId, empty, errorBox, toast, dialog } from '../ui.js';
import { get, signed, upload, encodeKey, liveState } from '../api.js';
import { tenant, signEntry } from '../tenant.js';

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function render(root, { params, navigate }) {
  const t = tenant();
  root.append(h('header.page-head', h('div', h('h1', 'Storage'),
    h('p.muted', 'Encrypted, replicated objects. Every chunk is stored on several nodes in different zones and checked against its hash on every read.'))));
  if (!t) {
    root.append(empty('No tenant key in this browser', 'Buckets and objects belong to a tenant key. Create one, or import the key file the CLI uses, to see and store data.',
      h('a.btn.primary', { href: '/tenant', 'data-link': '' }, icon('key'), 'Set up a tenant key')));
    return null;
  }
  const health = h('div.health-strip', { role: 'status' });
  root.append(health);
  get('/v1/storage/health').then((hl) => {
    const under = hl.under_replicated_chunks + hl.under_replicated_objects;
    clear(health,
      h('span', h('strong', String(hl.storage_nodes)), ' storage nodes'),
      h('span', 'default replication ', h('strong', `×${hl.replication_factor}`)),
      h('span', h('strong', bytes(hl.bytes_stored)), ' in ', h('strong', hl.chunks_stored.toLocaleString()), ' chunks on this node'),
      h(`span.${under ? 'warn' : 'ok'}`, under ? `${under} under-replicated (repair in progress)` : 'everything fully replicated', hl.last_repair_scan_ms ? h('small.muted', ` · checked ${ago(hl.last_repair_scan_ms)}`) : null));
  }).catch(() => health.remove());
  const layout = h('div.split');
  const side = h('aside.card.buckets', { 'aria-label': 'Buckets' });
  const panel = h('section.card.objects');
  layout.append(side, panel);
  root.append(layout);
  const state = { buckets: [], selected: params[0] || null, alive: true };
  loadBuckets();
  return () => { state.alive = false; };

  async function loadBuckets() {
    clear(side, h('header.card-head', h('h2', 'Buckets'), h('button.btn.small', { type: 'button', onclick: newBucket }, icon('plus'), 'New bucket')), h('p.muted.pad', 'Loading…'));
    try {
      state.buckets = (await signed('GET', '/v1/buckets')).sort((a, b) => a.name.localeCompare(b.name));
    } catch (e) {
      clear(side, h('header.card-head', h('h2', 'Buckets')), errorBox(e));
      return;
    }
    if (!state.alive) return;
    if (!state.selected && state.buckets.length) state.selected = state.buckets[0].name;
    drawBuckets();
    drawObjects();
  }

  function drawBuckets() {
    clear(side, h('header.card-head', h('h2', 'Buckets'), h('button.btn.small', { type: 'button', onclick: newBucket }, icon('plus'), 'New bucket')),
      state.buckets.length === 0
        ? empty('No buckets yet', 'A bucket holds objects. Its name is global: no other tenant can take it once it is yours.', h('button.btn.primary', { type: 'button', onclick: newBucket }, icon('plus'), 'Create a bucket'))
        : h('ul.bucket-list', state.buckets.map((b) => h('li',
          h('a', { href: `/storage/${encodeURIComponent(b.name)}`, 'aria-current': b.name === state.selected ? 'page' : null,
            onclick: (e) => { e.preventDefault(); e.stopPropagation(); state.selected = b.name; history.replaceState(null, '', `/storage/${encodeURIComponent(b.name)}`); drawBuckets(); drawObjects(); } },
          icon('folder'), h('span.grow', b.name), h('small.muted', `×${b.replication_factor}`))))));
  }

  function newBucket() {
    const name = h('input#bucket-name', { name: 'name', required: true, pattern: '[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]', autocomplete: 'off', placeholder: 'my-bucket', 'aria-describedby': 'bucket-help' });
    const rf = h('select#bucket-rf', { name: 'rf' }, h('option', { value: '' }, 'Network default'), [1, 2, 3, 4, 5].map((n) => h('option', { value: n }, `${n} cop${n === 1 ? 'y' : 'ies'}`)));
    const err = h('div');
    const form = h('form.form', { onsubmit: async (e) => {
      e.preventDefault();
      if (!BUCKET_RE.test(name.value)) { clear(err, h('div.alert.error', 'Use 3 to 63 lower-case letters, digits, dots or dashes, starting and ending with a letter or digit.')); return; }
      const btn = form.querySelector('button[type=submit]'); btn.disabled = true;
      try {
        await createBucket(name.value, rf.value ? Number(rf.value) : null);
        d.close(); toast(`Bucket ${name.value} created`);
        state.selected = name.value; history.replaceState(null, '', `/storage/${encodeURIComponent(name.value)}`);
        loadBuckets();
      } catch (x) { clear(err, errorBox(x)); btn.disabled = false; }
    } },
    h('label', { for: 'bucket-name' }, 'Name'), name,
    h('p#bucket-help.help', '3–63 characters: a–z, 0–9, dots and dashes. Names are global.'),
    h('label', { for: 'bucket-rf' }, 'Replication'), rf,
    h('p.help', 'How many nodes keep a copy of every chunk. Writes succeed once a majority has it.'),
    err,
    h('div.actions', h('button.btn.primary', { type: 'submit' }, 'Create bucket')));
    const d = dialog('New bucket', form);
    name.focus();
  }

  async function createBucket(name, rf) {
    const wall = Date.now();
    const record = { v: 1, name, owner: tenant().tenant, created_ms: wall };
    if (rf) record.replication_factor = rf;
    const text = JSON.stringify(record);
    const sig = await signEntry(`tenant/${tenant().tenant}/bucket/${name}`, text, wall, 0);
    return signed('PUT', `/v1/buckets/${encodeURIComponent(name)}`, { json: { record: text, ...sig } });
  }

  async function drawObjects() {
    const bucket = state.selected;
    if (!bucket) { clear(panel, empty('Pick or create a bucket', 'Objects live in buckets.')); return; }
    const fileInput = h('input#file-input.sr-only', { type: 'file', multiple: true, onchange: () => { uploadFiles([...fileInput.files]); fileInput.value = ''; } });
    const uploads = h('div.uploads', { 'aria-live': 'polite' });
    const list = h('div', h('p.muted.pad', 'Loading objects…'));
    const drop = h('label.dropzone', { for: 'file-input' }, icon('upload'), h('span', h('strong', 'Choose files'), ' or drop them here'), fileInput);
    for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
    for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove('over'); });
    drop.addEventListener('drop', (e) => uploadFiles([...e.dataTransfer.files]));
    clear(panel,
      h('header.card-head', h('div', h('h2', bucket), h('span.muted', 'Objects are encrypted by the node you talk to with your data key before any provider sees them.')),
        h('button.btn.small.danger-ghost', { type: 'button', onclick: () => deleteBucket(bucket) }, icon('trash'), 'Delete bucket')),
      drop, uploads, list);
    await loadObjects(list);

    async function uploadFiles(files) {
      for (const file of files) {
        const bar = h('progress', { max: file.size || 1, value: 0, 'aria-label': `Uploading ${file.name}` });
        const label = h('span.muted', '0%');
        const row = h('div.upload', icon('file'), h('span.grow', file.name), bar, label);
        uploads.append(row);
        try {
          await upload(`/v1/buckets/${encodeURIComponent(bucket)}/objects/${encodeKey(file.name)}`, file, (sent, total) => {
            bar.max = total || 1; bar.value = sent; label.textContent = `${Math.round((100 * sent) / (total || 1))}%`;
          });
          label.textContent = 'stored'; row.classList.add('done');
          toast(`${file.name} uploaded (${bytes(file.size)})`);
          setTimeout(() => row.remove(), 2500);
        } catch (e) {
          row.classList.add('failed'); clear(label, `failed: ${e.message}`);
        }
      }
      loadObjects(list);
    }
  }

  async function loadObjects(list) {
    const bucket = state.selected;
    let objects;
    try { objects = await signed('GET', `/v1/buckets/${encodeURIComponent(bucket)}/objects`); }
    catch (e) { clear(list, errorBox(e)); return; }
    if (!state.alive || bucket !== state.selected) return;
    if (!objects.length) { clear(list, empty('This bucket is empty', 'Upload files above, or use `xnode put` from a terminal with the same tenant key.')); return; }
    clear(list, h('div.table-wrap', h('table.table',
      h('caption.sr-only', `Objects in ${bucket}`),
      h('thead', h('tr', h('th', { scope: 'col' }, 'Key'), h('th.num', { scope: 'col' }, 'Size'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col' }, 'Stored'), h('th.actions-col', { scope: 'col' }, h('span.sr-only', 'Actions')))),
      h('tbody', objects.map((o) => h('tr', { 'data-key': o.key },
        h('td', h('button.link', { type: 'button', onclick: () => details(bucket, o) }, o.key)),
        h('td.num', bytes(o.size)),
        h('td.muted', o.content_type),
        h('td.muted', { title: new Date(o.created_ms).toLocaleString() }, ago(o.created_ms)),
        h('td.actions-col',
          h('button.icon-btn', { type: 'button', title: 'Details', 'aria-label': `Details of ${o.key}`, onclick: () => details(bucket, o) }, icon('info')),
          h('button.icon-btn', { type: 'button', title: 'Download', 'aria-label': `Download ${o.key}`, onclick: () => download(bucket, o) }, icon('download')),
          h('button.icon-btn.danger', { type: 'button', title: 'Delete', 'aria-label': `Delete ${o.key}`, onclick: () => remove(bucket, o, list) }, icon('trash')))))))));
  }

  async function download(bucket, o) {
    try {
      const res = await signed('GET', `/v1/buckets/${encodeURIComponent(bucket)}/objects/${encodeKey(o.key)}`, { dataKey: true, raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: o.key.split('/').pop() });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      toast(`Downloaded ${o.key}`);
    } catch (e) { toast(`Download failed: ${e.message}`, 'error'); }
  }

  async function remove(bucket, o, list) {
    if (!confirm(`Delete ${o.key} from ${bucket}? This cannot be undone.`)) return;
    try {
      await signed('DELETE', `/v1/buckets/${encodeURIComponent(bucket)}/objects/${encodeKey(o.key)}`);
      toast(`Deleted ${o.key}`);
      loadObjects(list);
    } catch (e) { toast(`Delete failed: ${e.message}`, 'error'); }
  }

  async function deleteBucket(bucket) {
    if (!confirm(`Delete the bucket ${bucket}? It must be empty.`)) return;
    try {
      const sig = await signEntry(`tenant/${tenant().tenant}/bucket/${bucket}`, null);
      await signed('DELETE', `/v1/buckets/${encodeURIComponent(bucket)}`, { json: sig });
      toast(`Bucket ${bucket} deleted`);
      state.selected = null; navigate('/storage', true);
    } catch (e) { toast(e.code === 'bucket_not_empty' || e.status === 409 ? `${bucket} is not empty: delete its objects first` : `Delete failed: ${e.message}`, 'error'); }
  }
}

async function details(bucket, o) {
  const body = h('div', h('p.muted', 'Asking every node which chunks it holds…'));
  dialog(o.key, body);
  let d;
  try { d = await signed('GET', `/v1/buckets/${encodeURIComponent(bucket)}/details/${encodeKey(o.key)}`); }
  catch (e) { clear(body, errorBox(e)); return; }
  const nodes = new Map((liveState().snapshot?.nodes || []).map((n) => [n.id, n]));
  const nodeChip = (id, held) => {
    const n = nodes.get(id);
    return h(`span.chip${held ? '.held' : '.missing'}`, { title: `${id}${n ? ` (${n.zone}, ${n.state})` : ''}${held ? '' : ' — no copy'}` },
      shortId(id), n ? h('small', ` ${n.zone}`) : null);
  };
  const chunkRow = (c, label) => h('tr',
    h('td', h('code', { title: c.id }, label || shortId(c.id))),
    h('td.num', bytes(c.size)),
    h('td', h('span.copies', `${c.held_by.length}/${d.replication_factor}`)),
    h('td', c.held_by.map((id) => nodeChip(id, true)), c.placed_on.filter((id) => !c.held_by.includes(id)).map((id) => nodeChip(id, false))));
  const tone = d.health === 'healthy' ? 'alive' : d.health === 'degraded' ? 'suspect' : 'dead';
  clear(body,
    h('dl.kv',
      h('dt', 'Health'), h('dd', h(`span.badge.state-${tone}`, h('span.dot'), d.health.replace('_', ' ')), ' ', h('span.muted', `fewest copies of any chunk: ${d.min_copies} of ${d.replication_factor}`)),
      h('dt', 'Size'), h('dd', `${bytes(d.size)} (${d.size.toLocaleString()} bytes)`),
      h('dt', 'Chunks'), h('dd', `${d.total_chunks} × up to ${bytes(d.chunk_size)}, plus the manifest`),
      h('dt', 'Content type'), h('dd', d.content_type),
      h('dt', 'ETag (MD5)'), h('dd', h('code', d.etag)),
      h('dt', 'Written by'), h('dd', h('code', { title: d.writer }, shortId(d.writer)), ' at ', new Date(d.created_ms).toLocaleString()),
      h('dt', 'Metadata on'), h('dd', d.metadata_nodes.map((id) => nodeChip(id, true))),
      d.unreachable.length ? [h('dt', 'Unreachable'), h('dd', d.unreachable.map((id) => nodeChip(id, false)))] : null),
    h('h3', 'Replicas'),
    h('div.table-wrap', h('table.table.compact',
      h('thead', h('tr', h('th', { scope: 'col' }, 'Chunk'), h('th.num', { scope: 'col' }, 'Size'), h('th', { scope: 'col' }, 'Copies'), h('th', { scope: 'col' }, 'Nodes'))),
      h('tbody', chunkRow(d.manifest, 'manifest'), d.chunks.map((c) => chunkRow(c))))),
    d.chunks.length < d.total_chunks ? h('p.muted', `Showing the first ${d.chunks.length} of ${d.total_chunks} chunks.`) : null);

}
