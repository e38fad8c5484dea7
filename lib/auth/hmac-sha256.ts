// HMAC-SHA256 (RFC 2104 over FIPS 180-4's SHA-256) of short messages, for the tokens of
// authenticated branch calls, which every branch call checks. Written out because node:crypto's
// one-shot `hash` costs about 6 µs per call between requests (OpenSSL 3 looks the algorithm up on
// each call), three of them per check; here a key's inner and outer states are computed once, so
// a token over a 200-byte message is five compressions of SHA-256's block, about 2 µs. Messages
// over SHORT_MESSAGE bytes go through node:crypto (same bytes: the unit test compares both with
// `createHmac` over every length up to several blocks).
import { hash, timingSafeEqual } from 'node:crypto';

const BLOCK = 64;
/** Longer messages are hashed by node:crypto, which is faster per byte. */
const SHORT_MESSAGE = 2048;

/** SHA-256's round constants and initial state, from the cube and square roots of the first primes (FIPS 180-4, 4.2.2 and 5.3.3). */
const K = new Int32Array(64);
const IV = new Int32Array(8);
{
  const primes: number[] = [];
  for (let n = 2; primes.length < 64; n++) if (primes.every((p) => n % p !== 0)) primes.push(n);
  // floor(x^(1/k)), Newton's method on integers from above
  const root = (x: bigint, k: bigint): bigint => {
    let r = 1n << BigInt(Math.ceil(x.toString(2).length / Number(k)));
    for (;;) {
      const next = ((k - 1n) * r + x / r ** (k - 1n)) / k;
      if (next >= r) return r;
      r = next;
    }
  };
  // the first 32 bits of the fractional part of p^(1/3) (p^(1/2)): floor(p^(1/3) * 2^32) mod 2^32
  primes.forEach((p, i) => {
    K[i] = Number(BigInt.asIntN(32, root(BigInt(p) << 96n, 3n)));
    if (i < 8) IV[i] = Number(BigInt.asIntN(32, root(BigInt(p) << 64n, 2n)));
  });
}

const W = new Int32Array(64);

/**
 * Runs SHA-256's compression over the 64-byte blocks of `data[from, to)`, updating `state`. The
 * message schedule is computed in the rounds' loop (one pass over W instead of two).
 */
function compress(state: Int32Array, data: Uint8Array, from: number, to: number): void {
  const w = W;
  const k = K;
  let h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3], h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7];
  for (let o = from; o < to; o += BLOCK) {
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let i = 0; i < 64; i++) {
      let wi: number;
      if (i < 16) {
        const j = o + 4 * i;
        wi = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
      } else {
        const x = w[i - 15];
        const y = w[i - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        wi = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      w[i] = wi;
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + k[i] + wi) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  state[0] = h0; state[1] = h1; state[2] = h2; state[3] = h3; state[4] = h4; state[5] = h5; state[6] = h6; state[7] = h7;
}

/** Writes the 8 words of `from` big-endian at the start of `to`. */
function words(from: Int32Array, to: Uint8Array): void {
  for (let i = 0, j = 0; i < 8; i++, j += 4) {
    const w = from[i];
    to[j] = w >>> 24;
    to[j + 1] = w >>> 16;
    to[j + 2] = w >>> 8;
    to[j + 3] = w;
  }
}

/** An HMAC-SHA256 key: the states after its ipad and opad blocks, and the blocks themselves (for node:crypto). */
export interface HmacSha256Key {
  readonly inner: Int32Array;
  readonly outer: Int32Array;
  readonly ipad: Buffer;
  readonly opad: Buffer;
}

/** Prepares `secret` (UTF-8) as an HMAC-SHA256 key. */
export function hmacSha256Key(secret: string): HmacSha256Key {
  let key = Buffer.from(secret, 'utf8');
  if (key.length > BLOCK) key = hash('sha256', key, 'buffer');
  const ipad = Buffer.alloc(BLOCK, 0x36);
  const opad = Buffer.alloc(BLOCK, 0x5c);
  for (let i = 0; i < key.length; i++) {
    ipad[i] ^= key[i];
    opad[i] ^= key[i];
  }
  const inner = IV.slice();
  const outer = IV.slice();
  compress(inner, ipad, 0, BLOCK);
  compress(outer, opad, 0, BLOCK);
  return { inner, outer, ipad, opad };
}

let scratch = Buffer.alloc(SHORT_MESSAGE);
const state = new Int32Array(8);
const pad = Buffer.alloc(2 * BLOCK); // the message's last partial block and its padding
const outerBlock = Buffer.alloc(BLOCK);
outerBlock[32] = 0x80;
outerBlock.writeUInt32BE((BLOCK + 32) * 8, 60); // the outer message: a block of key, then the 32-byte inner digest
const digest = Buffer.alloc(32);
/** base64url's alphabet. */
const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The 6-bit value of each ASCII character in base64url, -1 for one outside it. */
const BASE64URL_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64URL_ALPHABET.length; i++) BASE64URL_VALUE[BASE64URL_ALPHABET.charCodeAt(i)] = i;
/** The 6-bit value of `token`'s character at `at` in base64url; -1 outside it. */
function sextet(token: string, at: number): number {
  const code = token.charCodeAt(at);
  return code < 128 ? BASE64URL_VALUE[code] : -1;
}
/** A token's 16 bytes, decoded (reused). */
const given16 = Buffer.alloc(16);
/** The first 16 bytes of the MAC it is compared with (reused). */
const expected16 = Buffer.alloc(16);

/**
 * A message to MAC, written piece by piece (into a buffer the module reuses, valid until the next
 * {@link MacMessage.begin}) so that every key MACs the same bytes and no string is built for it.
 */
export class MacMessage {
  private bytes: Buffer = scratch;
  private length = 0;

  private static readonly current = new MacMessage();

  private constructor() {}

  /** An empty message (the module's one reused message). */
  static begin(): MacMessage {
    const message = MacMessage.current;
    message.bytes = scratch;
    message.length = 0;
    return message;
  }

  /** Appends the UTF-8 bytes of `text` (ASCII copied as it is, anything else encoded). */
  text(text: string): this {
    this.room(text.length * 3);
    const bytes = this.bytes;
    let n = this.length;
    let i = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      bytes[n++] = c;
    }
    this.length = i < text.length ? n + bytes.write(text.slice(i), n, 'utf8') : n;
    return this;
  }

  /** Appends `name` after its length in UTF-16 code units and a colon, then a newline: `4:name\n`. */
  field(name: string): this {
    let size = name.length;
    this.room(3 * size + 13); // the length's digits, ':', the name (UTF-8: at most 3 bytes per UTF-16 unit), '\n'
    const bytes = this.bytes;
    let n = this.length;
    if (size < 10) bytes[n++] = 48 + size;
    else {
      let digits = 1;
      for (let x = size; x >= 10; x = Math.floor(x / 10)) digits++;
      for (let i = n + digits - 1; i >= n; i--, size = Math.floor(size / 10)) bytes[i] = 48 + (size % 10);
      n += digits;
    }
    bytes[n++] = 58; // ':'
    // ASCII copied as it is (as text() does), anything else encoded
    const length = name.length;
    let i = 0;
    for (; i < length; i++) {
      const c = name.charCodeAt(i);
      if (c >= 0x80) break;
      bytes[n++] = c;
    }
    if (i < length) n += bytes.write(name.slice(i), n, 'utf8');
    bytes[n++] = 10; // '\n'
    this.length = n;
    return this;
  }

  /** Appends `tail` as it travels: its text (UTF-8) or its bytes; nothing appends nothing. */
  tail(tail: string | Uint8Array | undefined | null): this {
    if (tail == null) return this;
    if (typeof tail === 'string') return this.text(tail);
    this.room(tail.length);
    this.bytes.set(tail, this.length);
    this.length += tail.length;
    return this;
  }

  /** Makes room for `more` bytes after what is written. */
  private room(more: number): void {
    const needed = this.length + more;
    if (needed <= this.bytes.length) return;
    const grown = Buffer.alloc(Math.max(needed, 2 * this.bytes.length));
    this.bytes.copy(grown, 0, 0, this.length);
    this.bytes = grown;
    if (grown.length <= 4 * SHORT_MESSAGE) scratch = grown; // kept for the next message, within reason
  }

  /** HMAC-SHA256 of the message under `key`: the first `bytes` bytes, in base64url. */
  mac(key: HmacSha256Key, bytes: number): string {
    return this.digest(key).toString('base64url', 0, bytes);
  }

  /**
   * Whether `token` is the base64url text of the first 16 bytes of the message's HMAC under `key`
   * (22 characters, the last carrying 2 bits): the token (the caller's, not secret) is decoded, and
   * its bytes compared with the MAC's by node:crypto's `timingSafeEqual`, in time that does not
   * depend on where they differ. A token of another form is refused before the comparison.
   */
  matches16(key: HmacSha256Key, token: string): boolean {
    if (token.length !== 22) return false;
    let bad = 0;
    for (let i = 0, j = 0; i < 15; i += 3, j += 4) {
      const a = sextet(token, j), b = sextet(token, j + 1), c = sextet(token, j + 2), d = sextet(token, j + 3);
      bad |= a | b | c | d;
      given16[i] = (a << 2) | (b >> 4);
      given16[i + 1] = (b << 4) | (c >> 2);
      given16[i + 2] = (c << 6) | d;
    }
    const y = sextet(token, 20), z = sextet(token, 21);
    // a negative value marks a character outside base64url; the last one's 4 low bits are no MAC's
    if ((bad | y | z) < 0 || (z & 15) !== 0) return false;
    given16[15] = (y << 2) | (z >> 4);
    const d = this.digest(key);
    for (let i = 0; i < 16; i++) expected16[i] = d[i];
    return timingSafeEqual(given16, expected16);
  }

  /** The 32 bytes of the message's HMAC-SHA256 under `key` (a buffer the module reuses). */
  private digest(key: HmacSha256Key): Buffer {
    if (this.length > SHORT_MESSAGE) {
      const inner = hash('sha256', Buffer.concat([key.ipad, this.bytes.subarray(0, this.length)]), 'buffer');
      digest.set(hash('sha256', Buffer.concat([key.opad, inner]), 'buffer'));
      return digest;
    }
    const { bytes: data, length } = this;
    // inner hash: after the ipad block, the message's whole blocks, then its last partial block
    // padded (0x80, zeros, the bit length of ipad + message as 64 bits)
    const full = length & ~(BLOCK - 1);
    const rest = length - full;
    const padLength = rest + 9 > BLOCK ? 2 * BLOCK : BLOCK;
    state.set(key.inner);
    compress(state, data, 0, full);
    for (let i = 0; i < rest; i++) pad[i] = data[full + i];
    pad[rest] = 0x80;
    for (let i = rest + 1; i < padLength - 4; i++) pad[i] = 0;
    const bits = (BLOCK + length) * 8; // < 2^32: the message is short
    pad[padLength - 4] = bits >>> 24;
    pad[padLength - 3] = bits >>> 16;
    pad[padLength - 2] = bits >>> 8;
    pad[padLength - 1] = bits;
    compress(state, pad, 0, padLength);
    words(state, outerBlock);
    state.set(key.outer);
    compress(state, outerBlock, 0, BLOCK);
    words(state, digest);
    return digest;
  }
}
