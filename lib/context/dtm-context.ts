import { AsyncLocalStorage } from 'node:async_hooks';
import { ALWAYS_PASSED_HEADERS } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';

/** What the module remembers about the request being served. */
export interface DtmRequestContext {
  /** The allow-listed headers of the inbound request, or metadata of the inbound gRPC call (lower-case names). */
  headers: Record<string, string>;
}

/**
 * The module's one AsyncLocalStorage (module-private: not exported from the package), opened by
 * one initializer per transport (branches/http/dtm-http.integration.ts, branches/grpc/dtm-grpc.integration.ts).
 * Both enter it only for calls that carry an allow-listed header (gRPC: metadata): with none there
 * is nothing to pass on, and on Node 20 an active AsyncLocalStorage slows down every promise of the
 * call (bench/branch-overhead measured 60 µs of CPU per gRPC call when every call entered it).
 */
export const dtmContext = new AsyncLocalStorage<DtmRequestContext>();

/** The allow-listed headers of the request being served; none outside a request (a cron job, a script). */
export function currentPassThroughHeaders(): Record<string, string> {
  return dtmContext.getStore()?.headers ?? {};
}

/** The headers passed on: `pass_through_headers` plus W3C trace context, lower case. */
export function passThroughAllowList(config: DtmConfig): string[] {
  return [...new Set([...ALWAYS_PASSED_HEADERS, ...config.passThroughHeaders])];
}

/** Picks `allowList` (lower-case names) out of Node's inbound headers; undefined when none is there. */
export function pickHeaders(headers: Record<string, string | string[] | undefined>, allowList: readonly string[]): Record<string, string> | undefined {
  let picked: Record<string, string> | undefined;
  for (const name of allowList) {
    const value = headers[name];
    if (value !== undefined) (picked ??= {})[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return picked;
}
