// BLAKE3 (hash and derive_key), small and dependency-free, for signing registry entries
// and deriving the tenant's data key in the browser exactly as the Rust code does.
// Checked against the Rust `blake3` crate by crates/studio/tests/js_crypto.rs.

const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1, CHUNK_END = 2, PARENT = 4, ROOT = 8;
const DERIVE_KEY_CONTEXT = 32, DERIVE_KEY_MATERIAL = 64;
const BLOCK = 64, CHUNK = 1024;

function g(s, a, b, c, d, x, y) {
  s[a] = (s[a] + s[b] + x) | 0; s[d] ^= s[a]; s[d] = (s[d] >>> 16) | (s[d] << 16);
  s[c] = (s[c] + s[d]) | 0; s[b] ^= s[c]; s[b] = (s[b] >>> 12) | (s[b] << 20);
  s[a] = (s[a] + s[b] + y) | 0; s[d] ^= s[a]; s[d] = (s[d] >>> 8) | (s[d] << 24);
  s[c] = (s[c] + s[d]) | 0; s[b] ^= s[c]; s[b] = (s[b] >>> 7) | (s[b] << 25);
}

function compress(cv, m, counter, len, flags) {
  const s = new Uint32Array(16);
  s.set(cv, 0); s.set(IV.subarray(0, 4), 8);
  s[12] = counter % 0x100000000; s[13] = Math.floor(counter / 0x100000000);
  s[14] = len; s[15] = flags;
  let w = Uint32Array.from(m);
  for (let r = 0; r < 7; r++) {
    g(s, 0, 4, 8, 12, w[0], w[1]); g(s, 1, 5, 9, 13, w[2], w[3]);
    g(s, 2, 6, 10, 14, w[4], w[5]); g(s, 3, 7, 11, 15, w[6], w[7]);
    g(s, 0, 5, 10, 15, w[8], w[9]); g(s, 1, 6, 11, 12, w[10], w[11]);
    g(s, 2, 7, 8, 13, w[12], w[13]); g(s, 3, 4, 9, 14, w[14], w[15]);
    if (r < 6) w = Uint32Array.from(PERM, (p) => w[p]);
  }
  for (let i = 0; i < 8; i++) { s[i] ^= s[i + 8]; s[i + 8] ^= cv[i]; }
  return s;
}

function words(bytes, off, len) {
  const w = new Uint32Array(16);
  for (let i = 0; i < len; i++) w[i >> 2] |= bytes[off + i] << (8 * (i & 3));
  return w;
}

// The not-yet-compressed last block of a chunk or parent node.
function chunkOutput(key, input, start, end, index, flags) {
  let cv = key;
  const blocks = Math.max(1, Math.ceil((end - start) / BLOCK));
  for (let b = 0; b < blocks - 1; b++) {
    cv = compress(cv, words(input, start + b * BLOCK, BLOCK), index, BLOCK, flags | (b === 0 ? CHUNK_START : 0)).subarray(0, 8);
  }
  const off = start + (blocks - 1) * BLOCK;
  const len = end - off;
  return { cv, m: words(input, off, len), counter: index, len, flags: flags | CHUNK_END | (blocks === 1 ? CHUNK_START : 0) };
}

const cvOf = (o) => compress(o.cv, o.m, o.counter, o.len, o.flags).subarray(0, 8);
const parent = (key, l, r, flags) => {
  const m = new Uint32Array(16); m.set(l, 0); m.set(r, 8);
  return { cv: key, m, counter: 0, len: BLOCK, flags: flags | PARENT };
};

function hashWith(input, key, flags) {
  const chunks = Math.max(1, Math.ceil(input.length / CHUNK));
  const stack = [];
  for (let i = 0; i < chunks - 1; i++) {
    let cv = cvOf(chunkOutput(key, input, i * CHUNK, (i + 1) * CHUNK, i, flags));
    let total = i + 1;
    while ((total & 1) === 0) { cv = cvOf(parent(key, stack.pop(), cv, flags)); total >>= 1; }
    stack.push(cv);
  }
  let out = chunkOutput(key, input, (chunks - 1) * CHUNK, input.length, chunks - 1, flags);
  while (stack.length) out = parent(key, stack.pop(), cvOf(out), flags);
  const root = compress(out.cv, out.m, 0, out.len, out.flags | ROOT);
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = root[i >> 2] >>> (8 * (i & 3));
  return bytes;
}

const enc = new TextEncoder();
const asBytes = (x) => (typeof x === 'string' ? enc.encode(x) : x);

/** BLAKE3 of `input` (bytes or a string, UTF-8), 32 bytes. */
export function blake3(input) {
  return hashWith(asBytes(input), IV, 0);
}

/** BLAKE3's derive_key mode: a 32-byte key for `context` from `material`. */
export function deriveKey(context, material) {
  const ctx = hashWith(asBytes(context), IV, DERIVE_KEY_CONTEXT);
  const key = new Uint32Array(8);
  for (let i = 0; i < 32; i++) key[i >> 2] |= ctx[i] << (8 * (i & 3));
  return hashWith(asBytes(material), key, DERIVE_KEY_MATERIAL);
}
