import { AsyncLocalStorage } from 'node:async_hooks';
import { REQUIRED_BRANCH_QUERY, type BranchInfo } from '../branches/branch.types.js';
import { ALWAYS_PASSED_HEADERS } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';

/** What the module remembers about the request being served. */
export interface DtmRequestContext {
  /** The allow-listed headers of the inbound request (lower-case names). */
  headers: Record<string, string>;
}

/**
 * The module's one AsyncLocalStorage (module-private: not exported from the package). It is only
 * entered for requests that carry an allow-listed header: with none there is nothing to pass on,
 * and on Node 20 an active AsyncLocalStorage slows down every promise of the request.
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

type Query = Record<string, unknown> | undefined;

/** Whether a branch call's query lacks `key`: `gid`, `trans_type` and `op` must be non-empty strings, `branch_id` a string. */
function lacks(query: Query, key: (typeof REQUIRED_BRANCH_QUERY)[number]): boolean {
  const value = query?.[key];
  return typeof value !== 'string' || (value === '' && key !== 'branch_id');
}

/** Whether `query` carries every parameter of a DTM branch call (checked on every call, so it allocates nothing). */
export function hasBranchQuery(query: Query): boolean {
  return !lacks(query, 'gid') && !lacks(query, 'trans_type') && !lacks(query, 'branch_id') && !lacks(query, 'op');
}

/** The DTM query parameters a branch call lacks, for the message that names them. */
export function missingBranchQuery(query: Query): string[] {
  return REQUIRED_BRANCH_QUERY.filter((key) => lacks(query, key));
}

/** The branch info in a DTM branch call's query, or undefined when a required parameter is missing. */
export function branchInfoFromQuery(query: Query, headers: Record<string, string>): BranchInfo | undefined {
  if (!query || !hasBranchQuery(query)) return undefined;
  const get = (key: string) => (typeof query[key] === 'string' ? (query[key] as string) : '');
  return { gid: get('gid'), transType: get('trans_type'), branchId: get('branch_id'), op: get('op'), dtm: get('dtm') || undefined, phase2Url: get('phase2_url') || undefined, headers };
}
