// Tenant: the key that owns buckets (and deployments). It is generated or imported here and
// kept in this browser as a non-extractable key; only signatures and the derived data key
// leave it.

import { h, clear, icon, empty, errorBox, toast } from '../ui.js';
import { signed } from '../api.js';
import { tenant, generateTenant, importTenant, exportKeyFile, canExport, forgetTenant } from '../tenant.js';

export function render(root) {
  root.append(h('header.page-head', h('div', h('h1', 'Tenant'),
    h('p.muted', 'A tenant is an Ed25519 key. Its public half is your tenant id; everything you create is signed with it, so any node can check who may change what.'))));
  const body = h('div.stack');
  root.append(body);
  draw();

  function draw() {
    const t = tenant();
    const fileInput = h('input#key-file.sr-only', { type: 'file', onchange: async () => {
      const f = fileInput.files[0]; fileInput.value = '';
      if (!f) return;
      if (tenant() && !confirm('Replace the key in this browser? Buckets of the current key stay reachable only with that key.')) return;
      try { await importTenant(new Uint8Array(await f.arrayBuffer())); toast('Tenant key imported'); draw(); }
      catch (e) { toast(`Import failed: ${e.message}`, 'error'); }
    } });
    const importBtn = h('label.btn', { for: 'key-file', tabindex: '0', role: 'button', onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } } }, icon('upload'), 'Import a key file', fileInput);
    const generate = h('button.btn.primary', { type: 'button', onclick: async () => {
      if (tenant() && !confirm('Generate a new key? Export the current one first if you still need it: its buckets are reachable only with it.')) return;
      try { await generateTenant(); toast('New tenant key created in this browser'); draw(); }
      catch (e) { toast(`This browser cannot create Ed25519 keys: ${e.message}`, 'error'); }
    } }, icon('plus'), t ? 'Generate a new key' : 'Generate a key');
    if (!t) {
      clear(body, h('section.card', empty('No tenant key in this browser',
        'Generate a key here, or import the file the CLI created with `xnode key new` (by default ~/.config/xnode/tenant.key) to share a tenant between the CLI and the Studio.',
        generate, importBtn)), security());
      return;
    }
    const check = h('div');
    clear(body,
      h('section.card',
        h('header.card-head', h('h2', 'Your tenant'), h('span.badge.state-alive', h('span.dot'), 'ready')),
        h('dl.kv',
          h('dt', 'Tenant id'), h('dd', h('code.break#tenant-id', t.tenant), copyBtn(t.tenant, 'tenant id')),
          h('dt', 'Stored'), h('dd', 'In this browser only, as a non-extractable key (IndexedDB of this node\'s address): scripts can ask it to sign but never read it. Clearing site data removes it.'),
          h('dt', 'Data key'), h('dd', 'Derived from the key; sent to the node you talk to with uploads and downloads so it can encrypt and decrypt. Providers never see it.')),
        canExport() ? null : h('p.muted#export-note', 'The key file can be exported only right after the key was created or imported: this browser keeps the key non-extractable. Keep the file you saved then, or import it again.'),
        h('div.actions',
          canExport() ? h('button.btn', { type: 'button', onclick: () => {
            const blob = new Blob([exportKeyFile()], { type: 'application/octet-stream' });
            const url = URL.createObjectURL(blob);
            const a = h('a', { href: url, download: 'tenant.key' }); document.body.append(a); a.click(); a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 5000);
            toast('Key file downloaded: keep it secret');
          } }, icon('download'), 'Export key file') : null,
          importBtn, generate,
          h('button.btn.danger-ghost', { type: 'button', onclick: () => {
            if (!confirm('Forget the key in this browser? Without an exported copy, its buckets become unreachable.')) return;
            forgetTenant().then(() => { toast('Key removed from this browser'); draw(); });
          } }, icon('trash'), 'Forget key'))),
      h('section.card', h('header.card-head', h('h2', 'Use it from the CLI')),
        h('p', 'The exported file is the CLI\'s own format:'),
        h('pre.code', 'xnode bucket ls --tenant-key ./tenant.key\nxnode put ./photo.jpg my-bucket/photo.jpg --tenant-key ./tenant.key'),
        h('p.muted', 'Or set XNODE_TENANT_KEY to its path.')),
      h('section.card', h('header.card-head', h('h2', 'Check the signature'), h('button.btn.small', { type: 'button', onclick: runCheck }, 'Send a signed request')), check),
      security());

    async function runCheck() {
      clear(check, h('p.muted', 'Signing GET /v1/buckets…'));
      try {
        const buckets = await signed('GET', '/v1/buckets');
        clear(check, h('div.alert.ok', { role: 'status' }, `The node accepted the signature. This tenant owns ${buckets.length} bucket${buckets.length === 1 ? '' : 's'}.`));
      } catch (e) { clear(check, errorBox(e)); }
    }
  }
}

function copyBtn(text, what) {
  return h('button.icon-btn', { type: 'button', 'aria-label': `Copy the ${what}`, title: 'Copy', onclick: async () => {
    try { await navigator.clipboard.writeText(text); toast(`Copied the ${what}`); } catch { toast('Copy failed: select and copy by hand', 'error'); }
  } }, h('span', { 'aria-hidden': 'true' }, '⧉'));
}

function security() {
  return h('section.card.note', h('h2', 'How requests are signed'),
    h('p.muted', 'Every request carries the tenant id, a timestamp, a random nonce and an Ed25519 signature of those with the method and path, made in this browser with WebCrypto. The node refuses stale timestamps and reused nonces. Bucket claims are registry entries signed the same way, over the BLAKE3 hash of the bucket record.'));
}
