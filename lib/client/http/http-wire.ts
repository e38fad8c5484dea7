// The one place where the TypeScript API (camelCase, objects, Dates) and DTM's wire format
// (snake_case, JSON strings, seconds, base64 bodies) are converted into each other.
import { DtmError } from '../errors/dtm-error.js';
import { MESSAGES } from '../dtm.messages.js';
import type { BranchRecord, Payload, TransactionOptions, TransactionRecord } from './dtm-client.types.js';
import type { WireTransBranch, WireTransGlobal, WireTransRequest, WireTransType } from './dtm-wire.types.js';

/**
 * A branch payload as DTM stores it: a string, never empty (DTM would call the branch with GET).
 * Objects, arrays, numbers and booleans are JSON-encoded once; strings pass as they are; Buffers
 * must be UTF-8; `undefined` becomes `{}` and `null` the JSON text `null` (as DTM's Go SDK sends).
 */
export function encodePayload(payload: Payload): string {
  if (payload === undefined) return '{}';
  if (typeof payload === 'string') {
    if (payload === '') throw new DtmError(MESSAGES.emptyPayload());
    return payload;
  }
  if (Buffer.isBuffer(payload)) {
    const text = payload.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(payload)) throw new DtmError(MESSAGES.bufferNotUtf8());
    if (text === '') throw new DtmError(MESSAGES.emptyPayload());
    return text;
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new DtmError(MESSAGES.payloadNotSerializable(err instanceof Error ? err.message : String(err)), { cause: err });
  }
  if (text === undefined) throw new DtmError(MESSAGES.payloadNotSerializable(`${typeof payload} has no JSON form`));
  return text;
}

/** What a prepare / submit / abort body carries besides the gid, the type and the options. */
export interface WireRequestParts {
  customData?: string;
  concurrent?: boolean;
  steps?: Record<string, string>[];
  payloads?: string[];
  queryPrepared?: string;
}

/**
 * A prepare / submit / abort body, keys in the Go SDK's order; unset options are left out. Built key
 * by key, without spreads: this runs for every transaction sent.
 */
export function toWireRequest(gid: string, transType: WireTransType, options: TransactionOptions, parts: WireRequestParts = {}): WireTransRequest {
  const wire = { gid, trans_type: transType } as WireTransRequest;
  if (parts.customData !== undefined) wire.custom_data = parts.customData;
  if (options.waitResult) wire.wait_result = true;
  if (options.timeoutToFail !== undefined) wire.timeout_to_fail = options.timeoutToFail;
  if (options.requestTimeout !== undefined) wire.request_timeout = options.requestTimeout;
  if (options.retryInterval !== undefined) wire.retry_interval = options.retryInterval;
  if (options.branchHeaders && hasKeys(options.branchHeaders)) wire.branch_headers = options.branchHeaders;
  wire.concurrent = parts.concurrent ?? false;
  if (options.retryLimit !== undefined) wire.retry_limit = options.retryLimit;
  if (parts.steps) wire.steps = parts.steps;
  if (parts.payloads) wire.payloads = parts.payloads;
  if (parts.queryPrepared) wire.query_prepared = parts.queryPrepared;
  wire.protocol = '';
  return wire;
}

function hasKeys(value: object): boolean {
  for (const _ in value) return true;
  return false;
}

/** A `/query` or `/all` transaction as the TypeScript API shows it. */
export function fromWireTransaction(global: WireTransGlobal, branches: WireTransBranch[]): TransactionRecord {
  return {
    gid: global.gid,
    transType: global.trans_type,
    status: global.status,
    rollbackReason: global.rollback_reason || undefined,
    customData: parseJson(global.custom_data),
    queryPrepared: global.query_prepared || undefined,
    steps: global.steps ?? [],
    payloads: global.payloads ?? [],
    options: {
      timeoutToFail: global.timeout_to_fail,
      retryInterval: global.retry_interval,
      requestTimeout: global.request_timeout,
      retryLimit: global.retry_limit,
      waitResult: global.wait_result,
      branchHeaders: global.branch_headers ?? {},
      concurrent: global.concurrent ?? false,
    },
    createTime: toDate(global.create_time),
    finishTime: toDate(global.finish_time),
    nextCronTime: toDate(global.next_cron_time),
    branches: branches.map(fromWireBranch),
  };
}

function fromWireBranch(branch: WireTransBranch): BranchRecord {
  return {
    branchId: branch.branch_id,
    op: branch.op,
    status: branch.status,
    url: branch.url || undefined,
    data: branch.bin_data ? Buffer.from(branch.bin_data, 'base64').toString('utf8') : '',
    finishTime: toDate(branch.finish_time),
  };
}

/** A `Date` as DTM's `/all` filter wants it: epoch milliseconds. */
export function toWireTime(date: Date): string {
  return String(date.getTime());
}

function toDate(value: string | undefined): Date | undefined {
  if (!value || value.startsWith('0001-01-01')) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function parseJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
