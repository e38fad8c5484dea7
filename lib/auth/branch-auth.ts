// Authenticated branch calls: what the calling app (the AP) signs and a participant checks.
//
// DTM authenticates nothing, and everything it stores (branch URLs, payloads, branch_headers) is
// readable by anyone who can reach its API. So a signature is never a bearer secret: each token is
// an HMAC, under a key shared by the AP and its participants, of exactly one call (channel, gid,
// transaction type, branch id, op, target path and query, and payload). Read back from DTM, it can
// only repeat the call it was made for; the barrier makes that a no-op.
//
// Where tokens travel (HTTP header / gRPC metadata):
// - `dtm-auth`: the tokens of the calls DTM makes (saga steps, msg branches and back-check,
//   workflow resume), in the transaction's `branch_headers`, as `op.branchId=token,...` (channel `dtm`).
// - `dtm-auth-call`: the token of a call the app makes itself (TCC Try, XA action, the app's own
//   back-check, workflow steps); never stored in DTM (channel `app`).
// - TCC confirm / cancel (registered after the transaction began, when its branch_headers are
//   fixed): in the branch id, `01-<token>`, the token over the confirm and cancel targets and the
//   payload, checked against DTM's record of the branch.
// - `dtm-auth-headers`: the names of the forwarded headers every token of the transaction signs
//   with their values (all its branch headers but trace propagation and the module's own); absent
//   when it forwards none. A participant passes on only the forwarded headers a token signed.
// - `dtm-auth-issued`: when the transaction's tokens were issued (Unix seconds), among its branch
//   headers; every token signs it. A check that reads DTM's record compares it with the record's
//   creation: tokens read from a transaction DTM has forgotten cannot drive one re-created under its
//   gid (`issueProblem`).
import { inspect } from 'node:util';
import { hmacSha256Key, MacMessage, type HmacSha256Key } from './hmac-sha256.js';

/** Header (gRPC metadata key) of the tokens of the calls DTM makes. */
export const AUTH_HEADER = 'dtm-auth';

/** Header (gRPC metadata key) of the token of a call the app makes itself. */
export const AUTH_CALL_HEADER = 'dtm-auth-call';

/** Header (gRPC metadata key) naming the forwarded headers a call's token signs, lower case, comma-separated. */
export const AUTH_HEADERS_HEADER = 'dtm-auth-headers';

/** Header (gRPC metadata key) of the time a transaction's tokens were issued, in Unix seconds: among its branch headers, signed by each token. */
export const AUTH_ISSUED_HEADER = 'dtm-auth-issued';

/** Smallest accepted key length, in characters. */
export const MIN_AUTH_KEY_LENGTH = 32;

/** Who makes the call a token is for: DTM (token stored in DTM, readable there) or the app itself (never stored). */
export type AuthChannel = 'dtm' | 'app';

/** What one token names. */
export interface SignedCall {
  channel: AuthChannel;
  gid: string;
  transType: string;
  branchId: string;
  op: string;
  /** HTTP: the URL's path and query ({@link targetPath}); gRPC: `/package.Service/Method`; TCC branch: its confirm and cancel targets. */
  target: string;
  /** The body DTM (or the app) sends, as it travels: its text or bytes; nothing is the empty body. */
  payload: string | Uint8Array | undefined | null;
  /** The forwarded headers the token signs, as {@link signedHeaders} writes them; none when empty or absent. */
  headers?: string;
  /** When the transaction's tokens were issued ({@link AUTH_ISSUED_HEADER}); none from an app that signed no issue time. */
  issued?: string;
}

/** Forwarded headers as tokens sign them: `names` goes in {@link AUTH_HEADERS_HEADER}, `text` into each token. */
export interface SignedHeaders {
  /** The signed names, lower case, sorted, comma-separated. */
  names: string;
  /** `name:value\n` for each name in that order, values without surrounding spaces and tabs. */
  text: string;
}

/** The module's own headers, never signed as forwarded headers. */
const MODULE_HEADERS: ReadonlySet<string> = new Set([AUTH_HEADER, AUTH_CALL_HEADER, AUTH_HEADERS_HEADER, AUTH_ISSUED_HEADER]);

/**
 * Trace propagation headers, never signed: an HTTP / gRPC client instrumentation (OpenTelemetry's
 * W3C trace context and baggage, B3, Jaeger, Sentry, Datadog, cloud tracers) rewrites them on the
 * app's own calls. Names ending in `-` are prefixes.
 */
export const PROPAGATION_HEADERS: readonly string[] = [
  'traceparent',
  'tracestate',
  'baggage',
  'b3',
  'x-b3-',
  'uber-trace-id',
  'uberctx-',
  'ot-baggage-',
  'ot-tracer-',
  'sentry-trace',
  'x-datadog-',
  'x-cloud-trace-context',
  'x-amzn-trace-id',
];

/** Whether a token signs the forwarded header `name` (lower case) when it is among a transaction's branch headers: all but trace propagation and the module's own. */
export function isSignedHeader(name: string): boolean {
  return !MODULE_HEADERS.has(name) && !PROPAGATION_HEADERS.some((p) => (p.endsWith('-') ? name.startsWith(p) : name === p));
}

/** The forwarded headers among `headers` (a transaction's branch headers) that its tokens sign; undefined when there is none. */
export function signedHeaders(headers: Record<string, string> | undefined): SignedHeaders | undefined {
  let lower: [string, string][] | undefined;
  for (const name in headers) {
    const key = name.toLowerCase();
    if (isSignedHeader(key)) (lower ??= []).push([key, headers[name]]);
  }
  if (!lower) return undefined;
  lower.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let text = '';
  for (const [name, value] of lower) text += `${name}:${trimHeaderValue(value)}\n`;
  return { names: lower.map(([name]) => name).join(','), text };
}

/**
 * When DTM's record of a transaction says it was created (`created`, DTM's clock) too far from the
 * time its tokens were issued (`issued`, a verified {@link AUTH_ISSUED_HEADER} value, the app's
 * clock): more than `windowSeconds` apart either way, the seconds apart; otherwise (or when either
 * is unknown: tokens issued before issue times were signed) undefined.
 */
export function issueProblem(created: Date | undefined, issued: string | undefined, windowSeconds: number): number | undefined {
  if (created === undefined || issued === undefined || !ISSUED_VALUE.test(issued)) return undefined;
  const apart = Math.abs(created.getTime() / 1000 - Number(issued));
  return apart > windowSeconds ? Math.round(apart) : undefined;
}

/** An {@link AUTH_ISSUED_HEADER} value: Unix seconds. */
const ISSUED_VALUE = /^\d{1,12}$/;

/** The headers a signed text ({@link SignedHeaders.text}) holds, by name: each line is `name:value` (a name has no colon, a value no line break). */
export function headersOfText(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return headers;
}

/** A call's forwarded headers as its token must sign them ({@link headersOfCall}). */
export interface HeadersOfCall {
  /** As {@link signedHeaders} writes them; empty when `missing` or `bad`. */
  text: string;
  /** The listed names, and the value the call carries for each. */
  list: string[];
  values: string[];
  /** A listed header the call lacks (or carries twice). */
  missing?: string;
  /** The list is no sorted list of distinct lower-case names, or names the module's own headers. */
  bad?: true;
}

/**
 * What a token signs of a call's forwarded headers: the headers `names` (a {@link AUTH_HEADERS_HEADER}
 * value) lists, read with `read`. Any name the signing app chose is taken (another version of the
 * module may sign other ones), but the module's own headers.
 */
export function headersOfCall(names: string, read: (name: string) => string | undefined): HeadersOfCall {
  const list = names.split(',');
  const values: string[] = [];
  let text = '';
  let previous = '';
  for (const name of list) {
    if (!HEADER_NAME.test(name) || name <= previous || MODULE_HEADERS.has(name)) return { text: '', list: [], values: [], bad: true };
    previous = name;
    const value = read(name);
    if (value === undefined) return { text: '', list: [], values: [], missing: name };
    values.push(value);
    text += `${name}:${trimHeaderValue(value)}\n`;
  }
  return { text, list, values };
}

/** A lower-case header name (RFC 9110's token, upper case excluded). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** `value` without the spaces and tabs around it (which HTTP drops on the way). */
function trimHeaderValue(value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '');
}

const TOKEN_BYTES = 16; // 128 bits of the HMAC
const TOKEN_LENGTH = 22; // ... in base64url

/**
 * What a token names as its target: an HTTP(S) URL's path and the query it was registered with
 * ({@link signedQuery}: a handler may read it), or a gRPC target's `/package.Service/Method`.
 */
export function targetPath(target: string): string {
  if (target.startsWith('http://') || target.startsWith('https://')) {
    const hash = target.indexOf('#');
    const url = hash < 0 ? target : target.slice(0, hash);
    const q = url.indexOf('?');
    const beforeQuery = q < 0 ? url : url.slice(0, q);
    const start = beforeQuery.indexOf('/', beforeQuery.indexOf('//') + 2);
    const path = start < 0 ? '/' : beforeQuery.slice(start);
    return q < 0 ? path : path + signedQuery(url.slice(q + 1));
  }
  const slash = target.indexOf('/');
  return slash < 0 ? target : target.slice(slash);
}

/** The query keys DTM (and the module's own calls) append to a target: not part of what a token signs of the target's query. */
const BRANCH_QUERY_KEYS: ReadonlySet<string> = new Set(['gid', 'trans_type', 'branch_id', 'op', 'dtm', 'phase2_url']);

/**
 * What a token signs of a branch URL's query (without the `?`): its parameters but DTM's keys,
 * form-decoded, in their order, each written `?key=value` / `&key=value` URI-encoded; '' when
 * there is none (the token then signs what it signed before queries were signed). DTM keeps a
 * target's query as it was and appends its keys; the module's own calls re-encode it: both read
 * the same here, and an attacker who changes, adds or repeats a parameter changes it. A key or
 * value whose escapes are malformed is written as it came ({@link signedPart}).
 */
export function signedQuery(query: string): string {
  let signed = '';
  for (let start = 0; start < query.length; ) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    if (end > start) {
      let eq = query.indexOf('=', start);
      if (eq < 0 || eq > end) eq = end;
      const key = query.slice(start, eq);
      if (!BRANCH_QUERY_KEYS.has(formDecode(key))) signed += `${signed === '' ? '?' : '&'}${signedPart(key)}=${eq < end ? signedPart(query.slice(eq + 1, end)) : ''}`;
    }
    start = end + 1;
  }
  return signed;
}

/**
 * A query key or value as a token signs it: form-decoded and URI-encoded again, so that every
 * spelling of one value signs the same. One that does not decode but holds a valid escape
 * (`%41%ZZ`, `%FF`) is read apart by parsers (node:querystring, Express 5's, and the WHATWG URL
 * decode the valid escapes: `A%ZZ`, `\uFFFD`; qs and Fastify's none: `%41%ZZ`, `%FF`, the values of
 * `%2541%25ZZ`, `%25FF`): it is signed as it came, which no other text signs (an encoded text always
 * decodes). One with no valid escape (`50%`) every parser reads as its text, `50%25`'s value.
 */
function signedPart(text: string): string {
  if (text.indexOf('%') < 0 && text.indexOf('+') < 0) return encodeURIComponent(text);
  const spaced = text.replace(/\+/g, ' ');
  try {
    return encodeURIComponent(decodeURIComponent(spaced));
  } catch {
    return VALID_ESCAPE.test(text) ? text : encodeURIComponent(spaced);
  }
}

/** A percent escape that decodes to a byte. */
const VALID_ESCAPE = /%[0-9A-Fa-f]{2}/;

/** A query string's key or value decoded as a form (`+` is a space); malformed escapes stay as they are. */
export function formDecode(text: string): string {
  if (text.indexOf('%') < 0 && text.indexOf('+') < 0) return text;
  const spaced = text.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/**
 * What a token names as the target of a call that carries a phase-2 URL (an XA action: the branch
 * registers it with DTM as its commit / rollback target, so it is signed with the call): its target,
 * then that URL; the target alone without one.
 */
export function withPhase2(target: string, phase2Url: string | undefined): string {
  return phase2Url ? `${target}\nphase2_url=${phase2Url}` : target;
}

/** DTM's ops, which need no escaping in a `dtm-auth` entry (a workflow's name, the op of its resume call, may). */
const PLAIN_OPS: ReadonlySet<string> = new Set(['action', 'compensate', 'try', 'confirm', 'cancel', 'commit', 'rollback', 'msg']);

/** The key of a call's entry in the `dtm-auth` header. */
export function authEntryKey(op: string, branchId: string): string {
  return `${PLAIN_OPS.has(op) ? op : encodeURIComponent(op)}.${branchId}`;
}

/**
 * The module's branch-call keys (`lynx.dtm.branch_auth_keys`): the first signs, every one verifies
 * (rotation: add the new key first, keep the old one second until every AP signs with the new one).
 * Printing it prints no key.
 */
export class BranchAuth {
  private readonly keys: readonly HmacSha256Key[];

  constructor(keys: readonly string[]) {
    if (keys.length === 0) throw new Error('BranchAuth needs at least one key');
    this.keys = keys.map(hmacSha256Key);
  }

  /** The token of `call`, under the signing key. */
  sign(call: SignedCall): string {
    return message(call).mac(this.keys[0], TOKEN_BYTES);
  }

  /** Whether `token` is the token of `call` under any accepted key (compared in constant time). */
  verify(call: SignedCall, token: string | undefined): boolean {
    if (typeof token !== 'string' || token.length !== TOKEN_LENGTH) return false;
    const signed = message(call);
    let ok = false;
    for (const key of this.keys) ok = signed.matches16(key, token) || ok;
    return ok;
  }

  /** The TCC branch id that carries its own token: `01-<token>`. */
  tccBranchId(branchId: string, gid: string, confirm: string, cancel: string, payload: string | Uint8Array | undefined, headers: string | undefined, issued: string | undefined): string {
    return `${branchId}-${this.sign({ channel: 'dtm', gid, transType: 'tcc', branchId, op: 'tcc', target: tccTargets(confirm, cancel), payload, headers, issued })}`;
  }

  toJSON(): string {
    return `BranchAuth(${this.keys.length} key${this.keys.length === 1 ? '' : 's'})`;
  }

  [inspect.custom](): string {
    return this.toJSON();
  }
}

/** What a TCC branch token names as its target: its confirm and cancel targets, as DTM stores them. */
export function tccTargets(confirm: string, cancel: string): string {
  return `${confirm}\n${cancel}`;
}

/** A TCC branch id split into the id DTM's SDKs would have made and the token it carries (`01-<token>`). */
export function splitTccBranchId(branchId: string): { prefix: string; token?: string } {
  const dash = branchId.indexOf('-');
  return dash < 0 ? { prefix: branchId } : { prefix: branchId.slice(0, dash), token: branchId.slice(dash + 1) };
}

/** A branch id as log lines and refusals show it: what follows the dash of a TCC branch id (its token, or what a caller sent as one) as `<token>` (`01-<token>`), any other id as it is. */
export function shownBranchId(branchId: string): string {
  const dash = branchId.indexOf('-'); // as splitTccBranchId reads it, without its object: observed calls show every id
  return dash < 0 ? branchId : `${branchId.slice(0, dash)}-<token>`;
}

/** The token of the call `op` / `branchId` in a `dtm-auth` header value (`op.branchId=token,...`); found without splitting it or building a string. */
export function tokenInHeader(header: string | undefined, op: string, branchId: string): string | undefined {
  if (!header) return undefined;
  const name = PLAIN_OPS.has(op) ? op : encodeURIComponent(op);
  const length = header.length;
  for (let at = 0; at < length; ) {
    while (header.charCodeAt(at) === 32) at++; // an entry starts the header, or follows a comma (and spaces)
    const comma = header.indexOf(',', at);
    const end = comma < 0 ? length : comma;
    const dot = at + name.length;
    const equals = dot + 1 + branchId.length;
    if (header.startsWith(name, at) && header.charCodeAt(dot) === 46 && header.startsWith(branchId, dot + 1) && header.charCodeAt(equals) === 61) {
      return header.slice(equals + 1, end).trim();
    }
    at = end + 1;
  }
  return undefined;
}

/**
 * What a token is the HMAC-SHA256 of: the call's names, each after its length (so that no two
 * calls read the same), with its issue time and forwarded headers' text (each version signs what
 * the one before it did and one more part: 2 neither, 3 forwarded headers, 4 the issue time and
 * forwarded headers, possibly none, so that a token of an app that signed less still verifies),
 * then the payload's bytes.
 */
function message(call: SignedCall): MacMessage {
  const { headers, issued } = call;
  const dtm = call.channel === 'dtm';
  const version = issued !== undefined ? (dtm ? 'nestjs-dtm/4\ndtm\n' : 'nestjs-dtm/4\napp\n') : headers ? (dtm ? 'nestjs-dtm/3\ndtm\n' : 'nestjs-dtm/3\napp\n') : dtm ? 'nestjs-dtm/2\ndtm\n' : 'nestjs-dtm/2\napp\n';
  const signed = MacMessage.begin().text(version).field(call.gid).field(call.transType).field(call.branchId).field(call.op).field(call.target);
  if (issued !== undefined) signed.field(issued).field(headers ?? '');
  else if (headers) signed.field(headers);
  return signed.tail(call.payload);
}
