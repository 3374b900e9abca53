// The tenant key: generated or imported in the browser and kept there as a
// non-extractable WebCrypto key in IndexedDB (the seed itself is never stored, so no
// script can read it back; only the derived data key, which the node needs, is kept raw).
// Requests and registry entries are signed here with WebCrypto Ed25519, byte for byte as
// the CLI signs them (crates/types/src/request_auth.rs, crates/registry/src/entry.rs).

import { blake3, deriveKey } from './blake3.js';

/** Where earlier Studios kept the raw seed: moved into IndexedDB and erased on load. */
const LEGACY_STORAGE_KEY = 'xnode.tenant.v1';
const DB_NAME = 'xnode', DB_STORE = 'keys', DB_RECORD = 'tenant.v2';
/** Kind tag and format version of the CLI's tenant key file (crates/wire, kinds). */
const KEY_FILE_KIND = 17, KEY_FILE_VERSION = 1;
const DATA_KEY_CONTEXT = 'xnode 2026-11 tenant data key v1';
// Per-bucket keys and their checks (crates/store/src/keyring.rs): a deployment signs the
// check of each of its buckets' keys, so nodes accept only the tenant's keys.
const BUCKET_KEY_CONTEXT = 'xnode 2026-11 bucket key v1';
const KEY_CHECK_CONTEXT = 'xnode 2026-11 bucket key check v1';
// DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows.
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
export function unhex(text) {
  const t = text.trim();
  if (!/^([0-9a-fA-F]{2})*$/.test(t)) throw new Error('not hexadecimal');
  return Uint8Array.from(t.match(/../g) || [], (h) => parseInt(h, 16));
}

// { seed (only in the session that created or imported the key), tenant, dataKey, privateKey }
let current = null;
const listeners = new Set();

/** The signed key checks of `buckets` ({ bucket: hex check }) for the current tenant,
 * as `xnode_deploy::spec::key_checks` computes them: the check of the key derived from the
 * data key and the bucket's name. The keys themselves never leave this function. */
export function keyChecks(buckets, dataKeyHex = current && current.dataKey) {
  if (!dataKeyHex) throw new Error('no tenant key');
  const dataKey = unhex(dataKeyHex);
  const out = {};
  for (const bucket of [...new Set(buckets)].sort()) {
    const name = new TextEncoder().encode(bucket);
    const material = new Uint8Array(dataKey.length + name.length);
    material.set(dataKey); material.set(name, dataKey.length);
    out[bucket] = hex(deriveKey(KEY_CHECK_CONTEXT, deriveKey(BUCKET_KEY_CONTEXT, material)));
  }
  return out;
}

export function onTenantChange(fn) { listeners.add(fn); return () => listeners.delete(fn); }
export function tenant() { return current; }

export function ed25519Supported() {
  return !!(globalThis.crypto && crypto.subtle);
}

async function fromSeed(seed) {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new Error('a tenant key is 32 bytes');
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(PKCS8_PREFIX); pkcs8.set(seed, 16);
  // Imported once extractable only to read the public key, then again non-extractable:
  // the key kept and used for signing can never be exported by any script.
  const readable = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', readable);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
  pkcs8.fill(0);
  const b64 = jwk.x.replace(/-/g, '+').replace(/_/g, '/');
  const pub = Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
  return { seed, tenant: hex(pub), dataKey: hex(deriveKey(DATA_KEY_CONTEXT, seed)), privateKey };
}

// IndexedDB, where the non-extractable key lives. Without IndexedDB (Node.js in the tests,
// some private modes) the key lives for this page only.
function openDb() {
  if (!globalThis.indexedDB) return Promise.resolve(null);
  return new Promise((resolve) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
  });
}

async function dbDo(mode, action) {
  const db = await openDb();
  if (!db) return null;
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(DB_STORE, mode);
      const req = action(tx.objectStore(DB_STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally { db.close(); }
}

async function persist(t) {
  // The record holds the CryptoKey object itself (structured clone keeps it
  // non-extractable), the tenant id and the data key; never the seed.
  await dbDo('readwrite', (s) => s.put({ privateKey: t.privateKey, tenant: t.tenant, dataKey: t.dataKey }, DB_RECORD));
}

async function use(seed) {
  current = await fromSeed(seed);
  await persist(current);
  globalThis.localStorage?.removeItem(LEGACY_STORAGE_KEY);
  listeners.forEach((fn) => fn(current));
  return current;
}

/** Loads the key kept in this browser, if any (moving a key an earlier Studio kept as a
 *  raw seed in localStorage into IndexedDB, and erasing the seed). */
export async function loadTenant() {
  const legacy = globalThis.localStorage?.getItem(LEGACY_STORAGE_KEY);
  if (legacy) {
    // This session may still export the seed it just moved (the last chance to save it).
    try { return await use(unhex(legacy)); } catch { /* fall through */ }
  }
  try {
    const stored = await dbDo('readonly', (s) => s.get(DB_RECORD));
    current = stored && stored.privateKey ? { seed: null, ...stored } : null;
  } catch { current = null; }
  listeners.forEach((fn) => fn(current));
  return current;
}

/** Whether the key file can still be exported: only in the session that created or
 *  imported the key, because the browser keeps it non-extractable. */
export function canExport() { return !!(current && current.seed); }

export async function generateTenant() {
  return use(crypto.getRandomValues(new Uint8Array(32)));
}

/** Imports the CLI's key file (`xnode key new`: kind 17, version 1, 32-byte seed) or a
 *  64-digit hex seed. */
export async function importTenant(bytes) {
  let seed;
  if (bytes.length === 34 && bytes[0] === KEY_FILE_KIND && bytes[1] === KEY_FILE_VERSION) {
    seed = bytes.slice(2);
  } else {
    const text = new TextDecoder().decode(bytes).trim();
    if (/^[0-9a-fA-F]{64}$/.test(text)) seed = unhex(text);
    else if (bytes.length >= 2 && bytes[0] === KEY_FILE_KIND) throw new Error(`this key file has format version ${bytes[1]}, which this Studio does not read`);
    else throw new Error('not a tenant key: expected the file `xnode key new` writes (34 bytes) or 64 hex digits');
  }
  return use(seed);
}

/** The key in the CLI's file format, for `--tenant-key`. */
export function exportKeyFile() {
  if (!current) throw new Error('no tenant key');
  if (!current.seed) throw new Error('this browser keeps the key non-extractable: export it right after creating or importing it, or import your saved key file again');
  const out = new Uint8Array(34);
  out[0] = KEY_FILE_KIND; out[1] = KEY_FILE_VERSION; out.set(current.seed, 2);
  return out;
}

export async function forgetTenant() {
  globalThis.localStorage?.removeItem(LEGACY_STORAGE_KEY);
  try { await dbDo('readwrite', (s) => s.delete(DB_RECORD)); } catch { /* nothing kept */ }
  current = null;
  listeners.forEach((fn) => fn(null));
}

async function sign(text) {
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, current.privateKey, new TextEncoder().encode(text));
  return hex(new Uint8Array(sig));
}

function nonce() { return hex(crypto.getRandomValues(new Uint8Array(16))); }

/** The BLAKE3 hash (hex) of an empty body (request_auth::EMPTY_BODY_BLAKE3). */
export const EMPTY_BODY_BLAKE3 = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262';

function bodyBytes(body) {
  if (body == null) return new Uint8Array(0);
  if (typeof body === 'string') return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  throw new Error('a signed body must be a string, a Uint8Array or an ArrayBuffer');
}

/** The authentication headers of a request, signed with request signing v2
 *  (canonical_request in request_auth.rs). `path` is the percent-encoded path, `query` the
 *  raw query without `?`; `node` is the id of the node the request goes to (GET /v1/node),
 *  `body` the exact body sent (its BLAKE3 hash is signed) and `dataKey` whether to send
 *  (and bind) the tenant's data key header. */
export async function signRequest(method, path, query = '', { node, body = null, dataKey = false } = {}) {
  if (!current) throw new Error('create or import a tenant key first (Tenant page)');
  if (!node) throw new Error('a signed request needs the id of the node it goes to');
  const timestamp = Date.now();
  const n = nonce();
  const contentHash = body == null ? EMPTY_BODY_BLAKE3 : hex(blake3(bodyBytes(body)));
  const keyHeader = dataKey ? current.dataKey : null;
  const keyHash = keyHeader == null ? '' : hex(blake3(new TextEncoder().encode(keyHeader)));
  const text = ['XNODE-REQUEST-V2', method.toUpperCase(), path, query, String(timestamp), n,
    current.tenant, node, contentHash, keyHash].join('\n');
  const headers = {
    'x-xnode-tenant': current.tenant,
    'x-xnode-timestamp': String(timestamp),
    'x-xnode-nonce': n,
    'x-xnode-node': node,
    'x-xnode-content-blake3': contentHash,
    'x-xnode-signature': await sign(text),
  };
  if (keyHeader != null) headers['x-xnode-data-key'] = keyHeader;
  return headers;
}

/** Signs a registry entry (entry::signing_bytes): `value` is a string (UTF-8) or null for
 *  a tombstone. Returns { hlc_wall_ms, hlc_logical, signature }. */
export async function signEntry(key, value, wallMs = Date.now(), logical = 0) {
  if (!current) throw new Error('create or import a tenant key first (Tenant page)');
  const v = value == null ? 'tombstone' : `value:${hex(blake3(value))}`;
  const text = ['xnode/registry-entry/v1', key, String(wallMs), String(logical), current.tenant, v].join('\n');
  return { hlc_wall_ms: wallMs, hlc_logical: logical, signature: await sign(text) };
}
