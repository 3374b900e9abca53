// The node's public HTTP API, as the Studio uses it: plain and signed requests, uploads
// with progress, and the live event stream.

import { signRequest } from './tenant.js';

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

let nodeIdAsked = null;

/** The id of the node serving the Studio, which every signed request names; asked once
 *  (GET /v1/node) and remembered, or asked again after a failure. */
export function nodeId() {
  if (!nodeIdAsked) {
    nodeIdAsked = get('/v1/node').then((v) => v.id).catch((e) => { nodeIdAsked = null; throw e; });
  }
  return nodeIdAsked;
}

/** A tenant-signed request. `opts.dataKey` adds the data key header for object data; the
 *  body (a string or bytes, or `json`) is hashed into the signature. */
export async function signed(method, path, { query = '', body, json, dataKey = false, headers = {}, raw = false } = {}) {
  if (json !== undefined) body = JSON.stringify(json);
  // A file is read into memory so that the bytes hashed are the bytes sent.
  if (typeof Blob !== 'undefined' && body instanceof Blob) body = new Uint8Array(await body.arrayBuffer());
  const h = { ...(await signRequest(method, path, query, { node: await nodeId(), body: body ?? null, dataKey })), ...headers };
  if (json !== undefined) h['content-type'] = 'application/json';
  let res;
  try { res = await fetch(query ? `${path}?${query}` : path, { method, headers: h, body }); }
  catch (e) { throw new ApiError(0, 'unreachable', 'the node did not answer (' + e.message + ')'); }
  if (!res.ok) throw await failure(res);
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

/** Uploads `file` with XHR so the browser reports progress: onProgress(sent, total). The
 *  file is read once to hash it (the signature binds the body's hash), then sent. */
export async function upload(path, file, onProgress, extraHeaders = {}) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const signedHeaders = await signRequest('PUT', path, '', { node: await nodeId(), body: bytes, dataKey: true });
  const headers = { ...signedHeaders, ...extraHeaders };
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
    xhr.send(bytes);
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
