// End-to-end test of Xnode Studio in real headless Chromium (Debian's, driven by
// playwright-core). Run by crates/xnode/tests/studio.rs against a cluster of real `xnode`
// processes; it can also be pointed at a running devnet by hand:
//
//   STUDIO_URL=http://127.0.0.1:8080 node studio.mjs
//
// Environment:
//   STUDIO_URL        the node whose Studio is opened
//   STUDIO_NODES      JSON [{ "pid": 123, "api_url": "http://..." }] of the cluster's nodes;
//                     the last one is killed (SIGKILL) to watch its state change
//   STUDIO_TENANT_KEY a key file written by `xnode key new`, imported through the UI
//   STUDIO_ARTIFACTS  where screenshots go (default: tests-artifacts/studio)
//   STUDIO_WASM       the http module deployed through the UI (default guests/dist/hello.wasm)
//   STUDIO_REQUIRE_COMPUTE  fail if the node has no deployments API
//   CHROMIUM          the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const url = process.env.STUDIO_URL || 'http://127.0.0.1:8080';
const nodes = JSON.parse(process.env.STUDIO_NODES || '[]');
const artifacts = process.env.STUDIO_ARTIFACTS || 'tests-artifacts/studio';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const keyFile = process.env.STUDIO_TENANT_KEY;
const wasm = process.env.STUDIO_WASM || new URL('../../../guests/dist/hello.wasm', import.meta.url).pathname;
mkdirSync(artifacts, { recursive: true });

if (!existsSync(executablePath)) {
  console.error(`FAIL: no Chromium at ${executablePath} (install Debian's chromium: apt-get install chromium)`);
  process.exit(2);
}

const log = (...a) => console.log(`[studio e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 960 }, colorScheme: 'dark' });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
const shot = async (name) => { await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true }); log('screenshot', name); };

try {
  // 1. The Studio opens on the network page and shows every node, alive.
  await page.goto(url);
  await page.waitForURL(/\/network$/);
  const expected = Math.max(1, nodes.length);
  await page.waitForFunction((n) => document.querySelectorAll('[data-node-id][data-state=alive]').length === n, expected, { timeout: 20000 });
  log(`network page shows ${expected} alive nodes`);
  // Round trips fill in once the nodes have probed each other and gossiped a summary.
  if (expected > 1) await page.waitForFunction(() => document.querySelectorAll('table.matrix td[style]').length > 0, null, { timeout: 20000 });
  // The latency map: one marker per live node, spread over the map (on loopback the
  // coordinates differ by microseconds, so the check is that they are drawn apart and
  // inside the picture, not where), links for the measured round trips, a scale, and a
  // tooltip with the node's zone, coordinate error and measured RTT to this node.
  if (expected > 1) {
    await page.waitForFunction((n) => document.querySelectorAll('#latency-map svg.latmap [data-map-node]').length === n, expected, { timeout: 30000 });
    const placed = await page.$$eval('#latency-map [data-map-node]', (gs) => gs.map((g) => ({
      id: g.getAttribute('data-map-node'), zone: g.getAttribute('data-zone'), x: Number(g.getAttribute('data-x')), y: Number(g.getAttribute('data-y')),
    })));
    const [vw, vh] = (await page.getAttribute('#latency-map svg.latmap', 'viewBox')).split(' ').slice(2).map(Number);
    if (!placed.every((p) => p.x >= 0 && p.x <= vw && p.y >= 0 && p.y <= vh)) throw new Error(`a map marker is outside the map: ${JSON.stringify(placed)}`);
    if (new Set(placed.map((p) => `${Math.round(p.x)},${Math.round(p.y)}`)).size < 2) throw new Error(`every map marker is at one point: ${JSON.stringify(placed)}`);
    if (!placed.every((p) => /^zone-[abc]$/.test(p.zone))) throw new Error(`map markers without their zone: ${JSON.stringify(placed)}`);
    await page.waitForFunction(() => document.querySelectorAll('#latency-map .latmap-link').length > 0, null, { timeout: 30000 });
    const scale = await page.textContent('#latency-map .latmap-scale text');
    if (!/^[\d.]+ (ms|µs) round trip$/.test(scale)) throw new Error(`the map's scale reads ${scale}`);
    // A peer's tooltip and detail panel show its measured round trip to this node.
    const self = (await (await fetch(`${url}/v1/node`)).json()).id;
    const peer = placed.find((p) => p.id !== self);
    let rtt = null;
    for (let i = 0; i < 40 && rtt == null; i++) {
      await page.hover(`#latency-map [data-map-node="${peer.id}"] .latmap-dot`);
      rtt = await page.getAttribute('#map-detail [data-field=rtt]', 'data-rtt-ms').catch(() => null);
      if (rtt == null) await page.waitForTimeout(500);
    }
    if (!(Number(rtt) > 0)) throw new Error(`the map shows no measured RTT to ${peer.id}: ${rtt}`);
    const tip = await page.textContent(`#latency-map [data-map-node="${peer.id}"] title`);
    if (!tip.includes(peer.id) || !tip.includes(`zone ${peer.zone}`) || !/coordinate error [\d.]+ %/.test(tip) || !/RTT to this node: measured [\d.]+ (ms|µs)/.test(tip)) {
      throw new Error(`the map's tooltip lacks id, zone, error or RTT: ${tip}`);
    }
    log(`latency map: ${placed.length} markers, scale ${scale}, RTT to ${peer.id.slice(0, 8)} ${rtt} ms`);
  }
  await shot('network');

  // 2. Tenant: import the CLI's key file (or generate one), then check a signed request.
  await page.click('nav a[data-page=tenant]');
  await page.waitForSelector('h1:text("Tenant")');
  await shot('tenant-empty');
  if (keyFile) {
    await page.setInputFiles('#key-file', keyFile);
  } else {
    await page.click('button:has-text("Generate a key")');
  }
  await page.waitForSelector('#tenant-id');
  const tenantId = (await page.textContent('#tenant-id')).trim();
  log('tenant', tenantId);
  await page.click('button:has-text("Send a signed request")');
  await page.waitForSelector('.alert.ok:has-text("accepted the signature")');
  await shot('tenant');
  // The key is kept non-extractable: no raw seed in localStorage, and the CryptoKey in
  // IndexedDB refuses to be exported.
  const kept = await page.evaluate(async () => {
    const raw = Object.keys(localStorage).map((k) => localStorage.getItem(k)).join(' ');
    const rec = await new Promise((resolve, reject) => {
      const open = indexedDB.open('xnode');
      open.onsuccess = () => {
        const get = open.result.transaction('keys').objectStore('keys').get('tenant.v2');
        get.onsuccess = () => { resolve(get.result); open.result.close(); };
        get.onerror = () => reject(get.error);
      };
      open.onerror = () => reject(open.error);
    });
    let exported = 'refused';
    try { await crypto.subtle.exportKey('pkcs8', rec.privateKey); exported = 'EXPORTED'; } catch { /* expected */ }
    return { raw, extractable: rec.privateKey.extractable, exported, tenant: rec.tenant };
  });
  if (kept.extractable || kept.exported !== 'refused') throw new Error('the tenant key in IndexedDB is extractable');
  if (/[0-9a-f]{64}/.test(kept.raw)) throw new Error('a raw key is kept in localStorage');
  if (kept.tenant !== tenantId) throw new Error(`IndexedDB holds tenant ${kept.tenant}, not ${tenantId}`);
  log('tenant key kept non-extractable in IndexedDB');

  // 3. Storage: create a bucket (a registry entry signed in the browser), upload a file
  // with progress, see its replicas, download it back byte for byte.
  await page.click('nav a[data-page=storage]');
  await page.click('.buckets button:has-text("New bucket")');
  const bucket = `studio-${randomBytes(3).toString('hex')}`;
  await page.fill('#bucket-name', bucket);
  await page.selectOption('#bucket-rf', '3');
  await page.click('dialog button[type=submit]');
  await page.waitForSelector(`.bucket-list a:has-text("${bucket}")`);
  log('bucket created', bucket);
  const data = randomBytes(2 * 1024 * 1024 + 12345);
  await page.setInputFiles('#file-input', { name: 'hello.bin', mimeType: 'application/octet-stream', buffer: data });
  await page.waitForSelector('tr[data-key="hello.bin"]', { timeout: 30000 });
  log('uploaded hello.bin', data.length, 'bytes');
  await shot('storage');
  await page.click('tr[data-key="hello.bin"] button[aria-label^="Details"]');
  await page.waitForSelector('dialog .badge:has-text("healthy")', { timeout: 15000 });
  await shot('storage-details');
  await page.keyboard.press('Escape');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('tr[data-key="hello.bin"] button[aria-label^="Download"]'),
  ]);
  const got = readFileSync(await download.path());
  if (!got.equals(data)) throw new Error(`downloaded ${got.length} bytes that differ from the ${data.length} uploaded`);
  log('downloaded hello.bin intact');

  // 4. Observability: the requests just made appear in the network-wide chart.
  await page.click('nav a[data-page=observe]');
  await page.waitForSelector('#chart-requests');
  await page.waitForFunction(() => document.querySelectorAll('#chart-requests circle.pt').length > 0, null, { timeout: 30000 });
  log('requests chart has data');
  await shot('observe');

  // 5. Deployments: deploy a function through the UI, call it, see its requests in a chart.
  await page.click('nav a[data-page=deployments]');
  await page.waitForSelector('h1:text("Deployments")');
  await page.waitForTimeout(500);
  await shot('deployments-empty');
  // A node without compute answers 404 (no route); with compute, an unsigned request is 401.
  const hasCompute = (await fetch(`${url}/v1/deployments`)).status !== 404;
  if (hasCompute && existsSync(wasm)) {
    await page.click('button:has-text("New deployment")');
    await page.setInputFiles('#dep-module', wasm);
    await page.fill('#dep-name', 'hello');
    await page.selectOption('#dep-kind', 'http');
    await page.fill('#dep-replicas', '2');
    await shot('deployment-form');
    await page.click('dialog button[type=submit]');
    await page.waitForURL(/\/deployments\/hello$/, { timeout: 30000 });
    await page.waitForSelector('tr[data-replica-node] .badge:has-text("running")', { timeout: 30000 });
    log('deployment hello has a running replica');
    // Requests through two different nodes' gateways.
    for (let i = 0; i < 40; i++) {
      const base = nodes.length ? nodes[i % Math.min(2, nodes.length)].api_url : url;
      const res = await fetch(`${base}/fn/hello/e2e-${i}`);
      const text = await res.text();
      if (res.status !== 200 || !text.includes('hello from xnode')) throw new Error(`/fn/hello answered ${res.status}: ${text}`);
    }
    await page.click('button:has-text("Send a request")');
    await page.waitForSelector('pre.try:has-text("hello from xnode")');
    await page.waitForFunction(() => document.querySelectorAll('#chart-requests circle.pt').length > 0, null, { timeout: 30000 });
    log('deployment requests appear in its chart');
    await page.waitForSelector('.log-line', { timeout: 15000 }).catch(() => log('no log lines shown (not required)'));
    await shot('deployment');
    // Scale to three replicas: a new signed record; a third node starts one.
    await page.fill('#scale', '3');
    await page.click('form.inline button[type=submit]');
    await page.waitForSelector('.kv .badge:has-text("3 / 3 running")', { timeout: 30000 });
    log('scaled hello to 3 running replicas');
    // A function that answers a page whose script tries to read this origin's storage
    // (where the tenant key lives) finds nothing: functions run sandboxed.
    const htmlPage = new URL('../../../guests/dist/html-page.wasm', import.meta.url).pathname;
    await page.click('nav a[data-page=deployments]');
    await page.click('button:has-text("New deployment")');
    await page.setInputFiles('#dep-module', htmlPage);
    await page.fill('#dep-name', 'html-page');
    await page.selectOption('#dep-kind', 'http');
    await page.fill('#dep-replicas', '1');
    await page.click('dialog button[type=submit]');
    await page.waitForURL(/\/deployments\/html-page$/, { timeout: 30000 });
    await page.waitForSelector('tr[data-replica-node] .badge:has-text("running")', { timeout: 30000 });
    const evil = await context.newPage();
    await evil.goto(`${url}/fn/html-page/`);
    await evil.waitForFunction(() => document.title !== 'pending', null, { timeout: 15000 });
    const found = await evil.title();
    await evil.close();
    log(`a function's page read: ${found}`);
    if (found.includes(tenantId) || /[0-9a-f]{64}/.test(found) || !found.includes('blocked')) {
      throw new Error(`a function's page could read the Studio's storage: ${found}`);
    }
    await page.click('nav a[data-page=deployments]');
    await page.waitForSelector('tr[data-deployment=hello]');
    await shot('deployments');
  } else {
    log(hasCompute ? `no module at ${wasm}: deployment steps skipped` : 'this node has no compute: deployment steps skipped');
    if (process.env.STUDIO_REQUIRE_COMPUTE) throw new Error('compute was required (STUDIO_REQUIRE_COMPUTE)');
    await shot('deployments');
  }

  // 6a. Earnings and usage: the epoch history and earnings chart when the node settles,
  // a plain "settlement is off" otherwise (never empty charts); the tenant's usage charts
  // hold the receipts this node has for it, or the page says it has none.
  await page.click('nav a[data-page=earnings]');
  await page.waitForSelector('h1:text("Earnings and usage")');
  let ledger = await (await fetch(`${url}/v1/ledger/status`)).json();
  if (process.env.STUDIO_REQUIRE_SETTLEMENT && !ledger.enabled) throw new Error('settlement was required (STUDIO_REQUIRE_SETTLEMENT) but the node does not settle');
  if (!ledger.enabled) {
    await page.waitForSelector('#settlement-off .alert:has-text("Settlement is off on this node")', { timeout: 15000 });
    if (await page.$('#chart-earnings')) throw new Error('the earnings chart is drawn while settlement is off');
    log('earnings page says settlement is off');
  } else {
    await page.waitForSelector('#chart-earnings', { timeout: 15000 });
    if (process.env.STUDIO_REQUIRE_SETTLEMENT) {
      // Wait for an epoch that paid for the storage and calls made above and whose root is
      // on chain (the devnet's epochs last 30 s, then 5 s of grace and 5 s of gathering;
      // receipts are proposed every 5 s), then open the page afresh and find it there.
      const waitFrom = Date.now();
      const paid = () => ledger.recent.find((e) => e.status === 'posted' && Number(e.total) > 0);
      while (!paid()) {
        if (Date.now() - waitFrom > 90000) throw new Error(`no epoch paying anything posted within 90 s: ${JSON.stringify(ledger.recent.map((e) => [e.epoch, e.status, e.total]))}`);
        await page.waitForTimeout(1000);
        ledger = await (await fetch(`${url}/v1/ledger/status`)).json();
      }
      log(`waited ${((Date.now() - waitFrom) / 1000).toFixed(1)} s for a posted epoch that pays`);
      await page.click('nav a[data-page=network]');
      await page.click('nav a[data-page=earnings]');
      // The transaction is shown by the node that sent it (the epoch's designated poster).
      const posted = paid();
      const row = `#epoch-table tr[data-epoch="${posted.epoch}"]`;
      await page.waitForSelector(`${row} .badge:has-text("posted")`, { timeout: 15000 });
      const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => ({ text: td.textContent.trim(), title: td.querySelector('[title]')?.getAttribute('title') || td.getAttribute('title') })));
      if (cells[0].text !== String(posted.epoch) || cells[2].title !== posted.root || cells[3].text !== posted.total || (posted.tx_hash ? cells[5].title !== posted.tx_hash : cells[5].text !== '–')) {
        throw new Error(`epoch ${posted.epoch}'s row does not match /v1/ledger/status: ${JSON.stringify(cells)} vs ${JSON.stringify(posted)}`);
      }
      // Its bar: one segment per operator paid, each named by its node ([settlement] operators).
      await page.waitForFunction((n) => document.querySelectorAll('#chart-earnings rect.bar').length >= n, posted.payouts.length, { timeout: 15000 });
      const names = await page.$$eval('#chart-earnings .legend-item', (items) => items.map((i) => i.textContent));
      if (!names.length || !names.every((n) => /^node 12D3KooW/.test(n))) throw new Error(`the earnings chart does not name operators by node: ${names}`);
      log(`epoch ${posted.epoch} shown posted: total ${posted.total}, ${posted.payouts.length} payouts, tx ${posted.tx_hash ? posted.tx_hash.slice(0, 10) : 'sent by another member'}`);
    }
    const rows = ledger.recent.length;
    if (rows) {
      await page.waitForFunction((n) => document.querySelectorAll('#epoch-table tbody tr').length >= n, rows, { timeout: 15000 });
      if (ledger.recent.some((e) => Number(e.total) > 0)) {
        await page.waitForFunction(() => document.querySelectorAll('#chart-earnings rect.bar').length > 0, null, { timeout: 15000 });
        const legend = await page.$$eval('#chart-earnings .legend-item', (items) => items.map((i) => i.textContent));
        log(`earnings chart drawn, operators: ${legend.join(', ')}`);
      }
    }
    log(`earnings page shows ${rows} epochs: ${ledger.recent.map((e) => `${e.epoch} ${e.status} ${e.total}`).join('; ')}`);
  }
  const heldReceipts = async () => {
    let n = 0;
    for (let e = Math.max(0, ledger.current_epoch - 5); e <= ledger.current_epoch; e++) {
      n += (await (await fetch(`${url}/v1/ledger/receipts?epoch=${e}&tenant=${tenantId}`)).json()).receipts.length;
    }
    return n;
  };
  let held = await heldReceipts();
  if (process.env.STUDIO_REQUIRE_SETTLEMENT) {
    // The settling devnet's tenant lets every node countersign, and its providers propose
    // receipts every 5 s: the storage and calls made above are countersigned by now or soon.
    const waitFrom = Date.now();
    while (!held) {
      if (Date.now() - waitFrom > 20000) throw new Error('no countersigned receipt of the tenant on the node after 20 s');
      await page.waitForTimeout(1000);
      ledger = await (await fetch(`${url}/v1/ledger/status`)).json();
      held = await heldReceipts();
    }
    log(`waited ${((Date.now() - waitFrom) / 1000).toFixed(1)} s for the tenant's receipts`);
    await page.click('nav a[data-page=network]');
    await page.click('nav a[data-page=earnings]');
  }
  if (held) {
    await page.waitForFunction(() => document.querySelectorAll('#chart-usage-fuel rect.bar, #chart-usage-requests rect.bar, #chart-usage-bytes rect.bar').length > 0, null, { timeout: 20000 });
    log(`usage charts drawn from ${held} receipts`);
  } else {
    await page.waitForSelector('#usage-none', { timeout: 15000 });
    log('no receipts of this tenant on the node: the usage section says so');
  }
  await shot('earnings');

  // 6. Kill a node: its state changes on the network page within 5 s, with no reload.
  if (nodes.length > 1) {
    await page.click('nav a[data-page=network]');
    const victim = nodes[nodes.length - 1];
    const id = (await (await fetch(`${victim.api_url}/v1/node`)).json()).id;
    await page.waitForSelector(`[data-node-id="${id}"][data-state=alive]`);
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    await page.waitForSelector(`[data-node-id="${id}"]:not([data-state=alive])`, { timeout: 5000 });
    const seen = Date.now() - killedAt;
    const state = await page.getAttribute(`[data-node-id="${id}"]`, 'data-state');
    log(`killed node shown as ${state} after ${seen} ms`);
    await page.waitForSelector(`[data-node-id="${id}"][data-state=dead]`, { timeout: 10000 });
    // The map keeps the killed node where it was, drawn in its new state.
    await page.waitForSelector(`#latency-map [data-map-node="${id}"]:not([data-state=alive])`, { timeout: 10000 });
    log(`the latency map shows the killed node as ${await page.getAttribute(`#latency-map [data-map-node="${id}"]`, 'data-state')}`);
    await shot('network-node-killed');
  }

  // 7. The layout holds on a phone-sized screen.
  await page.setViewportSize({ width: 420, height: 900 });
  await page.click('nav a[data-page=network]');
  await page.waitForTimeout(600);
  await shot('network-mobile');

  if (problems.length) throw new Error(`the page reported errors:\n${problems.join('\n')}`);
  console.log(`STUDIO_TENANT=${tenantId}`);
  console.log(`STUDIO_BUCKET=${bucket}`);
  log('PASS');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error('FAIL:', e.message);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
