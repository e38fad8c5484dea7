import type { BranchStatus, TransactionStatus, WireTransType } from './dtm-wire.types.js';

export type { BranchStatus, TransactionStatus } from './dtm-wire.types.js';

/** Transaction types. */
export type TransactionType = WireTransType;

/** Per-transaction options; any not given takes the module's `lynx.dtm` value. Durations in seconds. */
export interface TransactionOptions {
  /** DTM `timeout_to_fail`: fail (tcc, xa, saga) or back-check (msg) an unfinished transaction after this. */
  timeoutToFail?: number;
  /** DTM `retry_interval`: seconds before DTM retries a failed branch (doubling after each error). */
  retryInterval?: number;
  /** DTM `request_timeout`: seconds DTM (and this module, for TCC try / XA action) waits for one branch call. */
  requestTimeout?: number;
  /** Saga only: how many times DTM re-runs a failing action before it rolls the saga back. */
  retryLimit?: number;
  /** DTM `wait_result`: submit answers only after DTM's first round (success, or 409 if not succeeded yet). */
  waitResult?: boolean;
  /** Headers DTM adds to every branch call of this transaction, retries included. */
  branchHeaders?: Record<string, string>;
}

/** A branch as DTM stores it. */
export interface BranchRecord {
  branchId: string;
  op: string;
  status: BranchStatus;
  url?: string;
  /** The stored request body. */
  data: string;
  finishTime?: Date;
}

/** The transaction options DTM stored. */
export interface StoredTransactionOptions {
  timeoutToFail?: number;
  retryInterval?: number;
  requestTimeout?: number;
  retryLimit?: number;
  waitResult?: boolean;
  branchHeaders: Record<string, string>;
  concurrent: boolean;
}

/** A global transaction as DTM stores it (`DtmClient.query`). */
export interface TransactionRecord {
  gid: string;
  transType: TransactionType;
  status: TransactionStatus;
  rollbackReason?: string;
  /** Parsed `custom_data` (saga orders / concurrency, msg delay), if any. */
  customData?: unknown;
  queryPrepared?: string;
  steps: Record<string, string>[];
  payloads: string[];
  options: StoredTransactionOptions;
  createTime?: Date;
  finishTime?: Date;
  nextCronTime?: Date;
  branches: BranchRecord[];
}

/** The end of a transaction: a rollback is a result, not an exception. */
export interface FinalResult {
  gid: string;
  status: 'succeed' | 'failed';
  rollbackReason?: string;
  branches: BranchRecord[];
  transaction: TransactionRecord;
}

/** Filter of `DtmClient.list` (DTM's `/all`). */
export interface ListFilter {
  status?: TransactionStatus;
  transType?: TransactionType;
  gid?: string;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Page size (DTM default 100). */
  limit?: number;
  /** Cursor from the previous page's `nextPosition`. */
  position?: string;
}

/** One page of `DtmClient.list`. */
export interface ListPage {
  transactions: Omit<TransactionRecord, 'branches'>[];
  /** Pass as `position` for the next page; undefined on the last page. */
  nextPosition?: string;
}

/** Options of `waitForFinal` / `submitAndWait`. */
export interface WaitOptions {
  /** Give up (with `DtmOngoingError`) after this many milliseconds. Default 60 000. */
  timeoutMs?: number;
  /** First delay between queries; it grows to 1 s. Default 50. */
  pollIntervalMs?: number;
}

/** What `DtmClient.ping` found. */
export interface PingResult {
  /** What the server's `/version` answered. */
  version: string;
  /** Round trip of the `/api/ping` call. */
  latencyMs: number;
}

/** A branch payload: objects and arrays are JSON-encoded once; strings and Buffers (UTF-8) are sent as they are. */
export type Payload = object | string | Buffer | number | boolean | null | undefined;

/** What a branch answered to a call the module made itself (TCC try, XA action, msg back-check). */
export interface BranchAnswer {
  status: number;
  /** Parsed JSON body, or the text when it is not JSON. */
  body: unknown;
  text: string;
}
