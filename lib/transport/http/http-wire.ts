// The one place where the neutral transaction terms (camelCase, seconds, Buffers) and DTM's HTTP
// API (snake_case, JSON strings, base64 bodies) are converted into each other.
import { isUtf8 } from 'node:buffer';
import type { BranchRecord, BranchStatus, ListFilter, StoredTransactionOptions, TransactionRecord } from '../dtm.types.js';
import type { BranchRegistration, TransactionRequest, WorkflowProgress } from '../dtm-transport.js';
import type { WireRegisterBranch, WireTransBranch, WireTransGlobal, WireTransOptions, WireTransRequest, WireWorkflowAnswer } from './http-wire.types.js';

/**
 * A prepare / submit / abort body, keys in the Go SDK's order; unset options are left out. Built key
 * by key, without spreads: this runs for every transaction sent.
 */
export function toWireRequest(request: TransactionRequest): WireTransRequest {
  const { options } = request;
  const wire = { gid: request.gid, trans_type: request.transType } as WireTransRequest;
  if (request.customData !== undefined) wire.custom_data = request.customData;
  if (options.waitResult) wire.wait_result = true;
  wire.timeout_to_fail = options.timeoutToFail;
  wire.request_timeout = options.branchTimeout;
  if (options.retryInterval !== undefined) wire.retry_interval = options.retryInterval; // unset: DTM's own (Go SDK omitempty)
  if (hasKeys(options.branchHeaders)) wire.branch_headers = options.branchHeaders;
  wire.concurrent = request.concurrent ?? false;
  if (options.retryLimit !== undefined) wire.retry_limit = options.retryLimit;
  if (request.steps) wire.steps = request.steps;
  if (request.payloads) wire.payloads = request.payloads as string[]; // the HTTP transport encodes payloads as text
  if (request.queryPrepared) wire.query_prepared = request.queryPrepared;
  wire.protocol = '';
  if (request.rollbackReason) wire.rollback_reason = request.rollbackReason;
  if (request.extra) wire.req_extra = request.extra;
  return wire;
}

/** A `/registerBranch` body: the registration's fields, and its payload as `data`. */
export function toWireRegistration(registration: BranchRegistration): WireRegisterBranch {
  const wire = { gid: registration.gid, trans_type: registration.transType, branch_id: registration.branchId } as WireRegisterBranch;
  if (registration.payload !== undefined) wire.data = registration.payload as string;
  for (const key in registration.fields) wire[key] = registration.fields[key];
  return wire;
}

/** The query of DTM's `/all` for `filter`. */
export function toWireListQuery(filter: ListFilter): string {
  const params = new URLSearchParams();
  if (filter.gid) params.set('gid', filter.gid);
  if (filter.position) params.set('position', filter.position);
  if (filter.limit !== undefined) params.set('limit', String(filter.limit));
  if (filter.status) params.set('status', filter.status);
  if (filter.transType) params.set('transType', filter.transType);
  if (filter.createdAfter) params.set('createTimeStart', String(filter.createdAfter.getTime()));
  if (filter.createdBefore) params.set('createTimeEnd', String(filter.createdBefore.getTime()));
  return params.toString();
}

function hasKeys(value: object): boolean {
  for (const _ in value) return true;
  return false;
}

/** Records read from one of DTM's SQL stores (see {@link branchStatusesBatched}). */
const FROM_SQL_STORE = new WeakSet<TransactionRecord>();

/**
 * Whether `record` was read from one of DTM's SQL stores (MySQL, Postgres: its row has an id),
 * where DTM v1.19 writes branch statuses in batches, up to 200 ms after it called the branches
 * (dtmsvr changeBranchStatus), and may record the transaction finished before them.
 */
export function branchStatusesBatched(record: TransactionRecord): boolean {
  return FROM_SQL_STORE.has(record);
}

/** A `/query` or `/all` transaction as the TypeScript API shows it. */
export function fromWireTransaction(global: WireTransGlobal, branches: WireTransBranch[]): TransactionRecord {
  const record = toRecord(global, branches);
  if (typeof global.id === 'number' && global.id > 0) FROM_SQL_STORE.add(record);
  return record;
}

function toRecord(global: WireTransGlobal, branches: WireTransBranch[]): TransactionRecord {
  return {
    gid: global.gid,
    transType: global.trans_type,
    status: global.status,
    protocol: global.protocol === 'grpc' ? 'grpc' : 'http',
    rollbackReason: global.rollback_reason || undefined,
    customData: parseJson(global.custom_data),
    queryPrepared: global.query_prepared || undefined,
    steps: global.steps ?? [],
    payloads: global.payloads ?? [],
    options: storedOptions(global),
    createTime: toDate(global.create_time),
    finishTime: toDate(global.finish_time),
    nextCronTime: toDate(global.next_cron_time),
    result: global.result || undefined,
    branches: branches.map((branch) => fromWireBranch(branch, global.protocol === 'grpc')),
  };
}

/**
 * The options DTM stored with a transaction. On Redis and boltdb stores DTM answers them as
 * top-level fields; on SQL stores (MySQL, Postgres) those fields are not columns (`gorm:"-"`) and
 * DTM keeps them only in the `options` column, the JSON text of its `TransOptions`. A top-level
 * value wins when it is set; the `options` text fills in the rest. Text that is not a JSON object
 * (or a value of the wrong type in it) is ignored.
 */
function storedOptions(global: WireTransGlobal): StoredTransactionOptions {
  const text = parseOptionsText(global.options);
  const seconds = (top: number | undefined, key: keyof WireTransOptions): number | undefined => {
    if (top) return top;
    const value = text[key];
    return typeof value === 'number' && Number.isFinite(value) ? value : top;
  };
  return {
    timeoutToFail: seconds(global.timeout_to_fail, 'timeout_to_fail'),
    retryInterval: seconds(global.retry_interval, 'retry_interval'),
    branchTimeout: seconds(global.request_timeout, 'request_timeout'),
    retryLimit: seconds(global.retry_limit, 'retry_limit'),
    waitResult: global.wait_result === true || text.wait_result === true ? true : global.wait_result,
    branchHeaders: global.branch_headers && hasKeys(global.branch_headers) ? global.branch_headers : stringMap(text.branch_headers),
    concurrent: global.concurrent === true || text.concurrent === true,
  };
}

/** DTM's `options` text as an object; `{}` when absent or not a JSON object. */
function parseOptionsText(text: string | undefined): Partial<Record<keyof WireTransOptions, unknown>> {
  if (!text) return {};
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The string values of `value` when it is an object; `{}` otherwise. */
function stringMap(value: unknown): Record<string, string> {
  const map: Record<string, string> = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return map;
  for (const [name, v] of Object.entries(value)) if (typeof v === 'string') map[name] = v;
  return map;
}

/** A `prepareWorkflow` answer in neutral terms. */
export function fromWireProgress(answer: WireWorkflowAnswer): WorkflowProgress {
  const global = answer.transaction;
  return {
    gid: global?.gid || undefined,
    status: global?.status ?? 'prepared',
    rollbackReason: global?.rollback_reason || undefined,
    result: global?.result || undefined,
    customData: global?.custom_data || undefined,
    transType: global?.trans_type || undefined,
    progresses: (answer.progresses ?? []).map((b) => ({ branchId: b.branch_id, op: b.op, status: b.status, data: b.bin_data ? Buffer.from(b.bin_data, 'base64') : Buffer.alloc(0) })),
    stored: global ? toRecord(global, []) : undefined,
  };
}

/**
 * A branch of a transaction DTM calls over HTTP, as `/query` answered it. In JSON (a controller
 * returning a `FinalResult`, a log line) its `data`, the stored request body, is that JSON text
 * instead of Buffer's `{"type":"Buffer","data":[...]}`; bytes that are not UTF-8 are base64, with
 * `dataEncoding: 'base64'`.
 */
class HttpBranchRecord implements BranchRecord {
  constructor(
    public branchId: string,
    public op: string,
    public status: BranchStatus,
    public url: string | undefined,
    public data: Buffer,
    public finishTime: Date | undefined,
  ) {}

  /** The record as JSON shows it: `data` as text, or as base64 when it is not UTF-8. */
  toJSON(): Record<string, unknown> {
    return isUtf8(this.data) ? this.json(this.data.toString('utf8')) : this.json(this.data.toString('base64'), 'base64');
  }

  protected json(data: string, dataEncoding?: 'base64'): Record<string, unknown> {
    const json: Record<string, unknown> = { branchId: this.branchId, op: this.op, status: this.status, url: this.url, data };
    if (dataEncoding !== undefined) json.dataEncoding = dataEncoding;
    json.finishTime = this.finishTime;
    return json;
  }
}

/** A branch of a transaction DTM calls over gRPC: in JSON its `data` (protobuf bytes) is base64, with `dataEncoding: 'base64'`. */
class GrpcBranchRecord extends HttpBranchRecord {
  /** The record as JSON shows it: `data` as base64. */
  override toJSON(): Record<string, unknown> {
    return this.json(this.data.toString('base64'), 'base64');
  }
}

function fromWireBranch(branch: WireTransBranch, grpc: boolean): BranchRecord {
  const Kind = grpc ? GrpcBranchRecord : HttpBranchRecord;
  const data = branch.bin_data ? Buffer.from(branch.bin_data, 'base64') : Buffer.alloc(0);
  return new Kind(branch.branch_id, branch.op, branch.status, branch.url || undefined, data, toDate(branch.finish_time));
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

/**
 * How DTM reads a branch's HTTP answer (`HTTPResp2DtmError`), in its order: 425 or `ONGOING` in
 * the body, then 409 or `FAILURE` in the body, then any status but 200 is an error (retried), so a
 * 201 or 204 is not a success.
 */
export function readBranchAnswer(status: number, text: string): 'SUCCESS' | 'FAILURE' | 'ONGOING' | 'ERROR' {
  if (status === 425 || text.includes('ONGOING')) return 'ONGOING';
  if (status === 409 || text.includes('FAILURE')) return 'FAILURE';
  return status === 200 ? 'SUCCESS' : 'ERROR';
}

/**
 * How DTM's Go workflow SDK reads the HTTP answer of a workflow's step or phase-2 call
 * (client/workflow/utils.go `HTTPResp2DtmError`): by its status alone, 425 ONGOING, 409 FAILURE,
 * 200 success, anything else an error; the body is the step's value, whatever words it holds.
 */
export function readWorkflowAnswer(status: number): 'SUCCESS' | 'FAILURE' | 'ONGOING' | 'ERROR' {
  if (status === 425) return 'ONGOING';
  if (status === 409) return 'FAILURE';
  return status === 200 ? 'SUCCESS' : 'ERROR';
}
