// The node's public HTTP API, as the Studio uses it: plain and signed requests, uploads
// with progress, and the live event stream.

import { signRequest, tenant } from './tenant.js';

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function failure(res) {
  let code = 'http_' + res.status, message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) { code = body.error.code; message = body.error.message; }
  } catch { /* not JSON */ }
  return new ApiError(res.status, code, message);
}

/** Encodes an object key for a URL path, keeping `/` (as the CLI does). */
export const encodeKey = (key) => key.split('/').map(encodeURIComponent).join('/');

export async function get(path) {
  let res;
  try { res = await fetch(path, { headers: { accept: 'application/json' } }); }
  catch (e) { throw new ApiError(0, 'unreachable', 'the node did not answer (' + e.message + ')'); }
  if (!res.ok) throw await failure(res);
  return res.json();
}

/** A tenant-signed request. `opts.dataKey` adds the data key header for object data. */
export async function signed(method, path, { query = '', body, json, dataKey = false, headers = {}, raw = false } = {}) {
  const h = { ...(await signRequest(method, path, query)), ...headers };
  if (dataKey) h['x-xnode-data-key'] = tenant().dataKey;
  if (json !== undefined) { h['content-type'] = 'application/json'; body = JSON.stringify(json); }
  let res;
  try { res = await fetch(query ? `${path}?${query}` : path, { method, headers: h, body }); }
  catch (e) { throw new ApiError(0, 'unreachable', 'the node did not answer (' + e.message + ')'); }
  if (!res.ok) throw await failure(res);
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

/** Uploads `file` with XHR so the browser reports progress: onProgress(sent, total). */
export async function upload(path, file, onProgress, extraHeaders = {}) {
  const headers = { ...(await signRequest('PUT', path)), 'x-xnode-data-key': tenant().dataKey, ...extraHeaders };
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', path);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('content-type', file.type || 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () => reject(new ApiError(0, 'unreachable', 'the upload was cut off: the node did not answer'));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body?.error?.code || 'http_' + xhr.status, body?.error?.message || xhr.statusText));
    };
    xhr.send(file);
  });
}

// ----- the live stream ------------------------------------------------------------------

const live = { snapshot: null, connected: false, error: null };
const subscribers = new Set();
let source = null;
let lastEvent = 0;

function publish() { subscribers.forEach((fn) => fn(live)); }

function connect() {
  if (source) source.close();
  source = new EventSource('/v1/events');
  source.addEventListener('snapshot', (e) => {
    try { live.snapshot = JSON.parse(e.data); } catch { return; }
    live.connected = true; live.error = null; lastEvent = Date.now();
    publish();
  });
  source.onerror = () => {
    live.connected = false;
    live.error = 'Lost the live connection to this node; reconnecting…';
    publish();
  };
}

/** Subscribes to live snapshots ({nodes, network, node, at_ms}); returns an unsubscribe. */
export function subscribe(fn) {
  subscribers.add(fn);
  if (!source) {
    connect();
    // EventSource retries on its own; restart it if it goes silent (a proxy may stall it).
    setInterval(() => { if (Date.now() - lastEvent > 10000) connect(); }, 5000);
  }
  if (live.snapshot || live.error) fn(live);
  return () => subscribers.delete(fn);
}

export const liveState = () => live;
