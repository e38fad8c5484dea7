import { AsyncLocalStorage } from 'node:async_hooks';
import { TRACE_CONTEXT_HEADERS } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';

/** What the module remembers about the request being served. */
export interface DtmRequestContext {
  /** The allow-listed headers of the inbound request, or metadata of the inbound gRPC call (lower-case names). */
  headers: Record<string, string>;
}

/** Where the request being served keeps its {@link DtmRequestContext}: run code with one, read it back. */
export interface RequestContextCarrier {
  /** Runs `fn` (and everything it starts) with `value` as the request context. */
  run<T>(value: DtmRequestContext, fn: () => T): T;
  /** The request context of the code running, if any. */
  get(): DtmRequestContext | undefined;
}

/** The module's own AsyncLocalStorage: the carrier unless an OpenTelemetry SDK's context manager offers one. */
const ownStorage = new AsyncLocalStorage<DtmRequestContext>();
const OWN_CARRIER: RequestContextCarrier = { run: (value, fn) => ownStorage.run(value, fn), get: () => ownStorage.getStore() };

/** The carrier, chosen at the first request that has a context (then kept for the process). */
let carrier: RequestContextCarrier | undefined;
/** What offers a carrier other than the module's own (an OpenTelemetry SDK's context, through the instrumentation). */
let offered: (() => RequestContextCarrier | undefined) | undefined;

/**
 * @internal Offers a carrier for the request context (the instrumentation offers OpenTelemetry's
 * context, when an SDK registered a context manager that carries values). It is asked once, at the
 * first request with a context; without an offer, or when it gives none, the module's own
 * AsyncLocalStorage carries it. On Node 20 every AsyncLocalStorage in use slows down every promise
 * of the process (bench/README.md, #16): with an SDK the module's context rides in the SDK's one.
 */
export function offerContextCarrier(offer: () => RequestContextCarrier | undefined): void {
  offered = offer;
}

/**
 * `offer` (when there is one), falling back to the module's own storage for a request it does not
 * carry: should the SDK's context manager be disabled after the choice (`context.disable()`), the
 * pass-through headers still reach the transactions the request starts.
 */
function withFallback(offer: RequestContextCarrier | undefined): RequestContextCarrier | undefined {
  if (!offer) return undefined;
  return {
    run: (value, fn) => offer.run(value, () => (offer.get() === value ? fn() : ownStorage.run(value, fn))),
    get: () => offer.get() ?? ownStorage.getStore(),
  };
}

/**
 * The request context of the call being served, opened by one initializer per transport
 * (branches/http/dtm-http.integration.ts, branches/grpc/dtm-grpc.integration.ts). Both enter it
 * only for calls that carry an allow-listed header (gRPC: metadata): with none there is nothing to
 * pass on, and on Node 20 an active AsyncLocalStorage slows down every promise of the call
 * (bench/branch-overhead measured 60 µs of CPU per gRPC call when every call entered it).
 */
export const dtmContext = {
  /** Runs `fn` with `value` as the request context. */
  run<T>(value: DtmRequestContext, fn: () => T): T {
    return (carrier ??= withFallback(offered?.()) ?? OWN_CARRIER).run(value, fn);
  },
  /** The request context of the code running (none before the first request that had one). */
  getStore(): DtmRequestContext | undefined {
    return carrier?.get();
  },
};

/** The allow-listed headers of the request being served; none outside a request (a cron job, a script). */
export function currentPassThroughHeaders(): Record<string, string> {
  return dtmContext.getStore()?.headers ?? {};
}

/** The headers passed on: `pass_through_headers`, plus W3C trace context unless `pass_trace_context` is false; lower case. */
export function passThroughAllowList(config: DtmConfig): string[] {
  return [...new Set([...(config.passTraceContext === false ? [] : TRACE_CONTEXT_HEADERS), ...config.passThroughHeaders])];
}

/** Picks `allowList` (lower-case names) out of Node's inbound headers; undefined when none is there. Trace context is checked ({@link checkTraceContext}). */
export function pickHeaders(headers: Record<string, string | string[] | undefined>, allowList: readonly string[]): Record<string, string> | undefined {
  let picked: Record<string, string> | undefined;
  for (const name of allowList) {
    const value = headers[name];
    if (value !== undefined) (picked ??= {})[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return picked && checkTraceContext(picked);
}

/** The value of each lower-case hex digit's char code (`0-9`, `a-f`); -1 for every other code below 128. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) HEX_VALUE['0123456789abcdef'.charCodeAt(digit)] = digit;

/** Whether `value[from, to)` is lower-case hex: 1 with a non-zero digit, 0 when all zeros, -1 when not hex. */
function hexRun(value: string, from: number, to: number): 1 | 0 | -1 {
  let nonZero = false;
  for (let i = from; i < to; i++) {
    const code = value.charCodeAt(i);
    const digit = code < 128 ? HEX_VALUE[code]! : -1;
    if (digit < 0) return -1;
    if (digit !== 0) nonZero = true;
  }
  return nonZero ? 1 : 0;
}

/**
 * Whether `value` is a well-formed W3C `traceparent` of 55 characters: version (lower-case hex, not
 * `ff`), trace id (32 hex digits, not all zeros), parent id (16, not all zeros), flags (2), joined
 * by `-`. Checked char by char: it runs on every branch call that carries one.
 */
function isTraceparent(value: string): boolean {
  if (value.length !== 55 || value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45) return false;
  if (hexRun(value, 0, 2) < 0 || value.startsWith('ff')) return false;
  return hexRun(value, 3, 35) === 1 && hexRun(value, 36, 52) === 1 && hexRun(value, 53, 55) >= 0;
}

/** The trace id, parent id and flags of a well-formed W3C `traceparent` (as {@link checkTraceContext} accepts it); undefined otherwise. */
export function parseTraceparent(value: string): { traceId: string; spanId: string; flags: number } | undefined {
  if (!isTraceparent(value)) return undefined;
  return { traceId: value.slice(3, 35), spanId: value.slice(36, 52), flags: HEX_VALUE[value.charCodeAt(53)]! * 16 + HEX_VALUE[value.charCodeAt(54)]! };
}
/** One W3C `tracestate` list member: `key=value` (key simple or `tenant@system`; value printable ASCII but `,` and `=`, no trailing space). */
const TRACESTATE_MEMBER = /^(?:[a-z0-9][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** What the module passes on of a `tracestate`: at most 512 characters and 32 members (W3C's limits for propagation). */
const MAX_TRACESTATE_LENGTH = 512;
const MAX_TRACESTATE_MEMBERS = 32;

/** Whether `value` is a well-formed W3C `tracestate` within the limits the module passes on. */
export function isValidTracestate(value: string): boolean {
  if (value.length > MAX_TRACESTATE_LENGTH) return false;
  let members = 0;
  for (const part of value.split(',')) {
    const member = part.trim();
    if (member === '') continue; // empty list members are allowed
    if (++members > MAX_TRACESTATE_MEMBERS || !TRACESTATE_MEMBER.test(member)) return false;
  }
  return true;
}

/**
 * `picked` without a malformed `traceparent` (W3C trace context, version-traceid-parentid-flags),
 * and without a `tracestate` that is malformed, too long, or comes without a valid `traceparent`
 * (W3C: then it is not read at all): DTM would store and send whatever came in. Undefined when
 * nothing is left.
 */
export function checkTraceContext(picked: Record<string, string>): Record<string, string> | undefined {
  const { traceparent, tracestate } = picked;
  if (traceparent === undefined && tracestate === undefined) return picked;
  const parentValid = traceparent !== undefined && isTraceparent(traceparent);
  if (traceparent !== undefined && !parentValid) delete picked.traceparent;
  if (tracestate !== undefined && !(parentValid && isValidTracestate(tracestate))) delete picked.tracestate;
  return Object.keys(picked).length > 0 ? picked : undefined;
}
