import type { DtmProtocol } from '../errors/dtm-error.js';

/** Transaction types DTM knows. */
export type TransactionType = 'saga' | 'msg' | 'tcc' | 'xa' | 'workflow';

/** Global transaction statuses DTM stores. */
export type TransactionStatus = 'prepared' | 'submitted' | 'aborting' | 'succeed' | 'failed';

/** Branch statuses DTM stores. */
export type BranchStatus = 'prepared' | 'succeed' | 'failed';

/**
 * Per-transaction options; any not given takes the module's `lynx.dtm` value. Every duration is in
 * seconds. They are resolved when the transaction is created (`newSaga`, `newMsg`,
 * `tccGlobalTransaction`, ...), together with the pass-through headers of the request being served.
 * A key not listed here (DTM's `timeout_to_fail`, a typo) is refused with `DtmUsageError`.
 */
export interface TransactionOptions {
  /** How the module talks to DTM for this transaction (`lynx.dtm.protocol`, default `http`). Fixed at creation. */
  protocol?: DtmProtocol;
  /**
   * DTM `timeout_to_fail`: fail (tcc, xa, saga) or back-check (msg) an unfinished transaction after
   * this many seconds (whole, 0 to 2147483647). `0`: a saga has no timeout; a TCC / XA / msg gets
   * the DTM server's default. Unset: `lynx.dtm.saga_timeout` for a saga, `transaction_timeout` for the others.
   */
  timeoutToFail?: number;
  /**
   * DTM `retry_interval`: seconds before DTM retries a failed branch, doubling after each error
   * (whole, 1 to 2147483647). Unset: `lynx.dtm.retry_interval`, and when that is unset too none is
   * sent and DTM's own applies (10 s, or a shorter `timeoutToFail` for its first look). DTM first
   * looks at a transaction (back-checks a prepared message, rolls back a TCC / XA whose app died)
   * after the retry interval when one is sent: a `timeoutToFail` below it takes effect only then.
   */
  retryInterval?: number;
  /**
   * Seconds DTM (and this module, for a TCC Try or an XA action) waits for one branch call
   * (`lynx.dtm.branch_timeout`; DTM `request_timeout`; whole, 1 to 2147483).
   */
  branchTimeout?: number;
  /** Saga only (refused with `DtmUsageError` for the others, where DTM never applies it): how many re-runs of failing actions DTM makes before it rolls the saga back, counted for the whole saga, not per action (a whole number, 1 or more; unset: no limit, DTM retries until the action succeeds; 0, DTM's "no limit" too, is refused). DTM makes the re-runs at once, not at the retry interval, and counts an ONGOING answer as one. */
  retryLimit?: number;
  /** DTM `wait_result`: submit answers only after DTM's first round. */
  waitResult?: boolean;
  /** Headers DTM adds to every branch call of this transaction, retries included (gRPC: metadata). */
  branchHeaders?: Record<string, string>;
}

/** A branch as DTM stores it. */
export interface BranchRecord {
  branchId: string;
  op: string;
  status: BranchStatus;
  url?: string;
  /**
   * The stored request body: JSON text for HTTP branches, protobuf bytes for gRPC ones. In JSON (a
   * controller returning a `FinalResult`) that text, or base64 with `dataEncoding: 'base64'` (gRPC, or not UTF-8).
   */
  data: Buffer;
  finishTime?: Date;
}

/**
 * The transaction options DTM stored (read from its top-level fields, or, on SQL stores, where DTM
 * keeps them only there, from its `options` column). An option the transaction was sent without is
 * `undefined`: DTM's own default applies.
 */
export interface StoredTransactionOptions {
  timeoutToFail?: number;
  retryInterval?: number;
  branchTimeout?: number;
  retryLimit?: number;
  waitResult?: boolean;
  branchHeaders: Record<string, string>;
  /**
   * DTM's top-level `concurrent` option, which DTM reads for messages only. A saga's concurrency is
   * in {@link TransactionRecord.customData} (`{ concurrent: true, orders }`), what DTM runs it by:
   * a concurrent saga submitted over gRPC (whose API has no such option) shows `false` here.
   */
  concurrent: boolean;
}

/** A global transaction as DTM stores it (`DtmClient.query`). */
export interface TransactionRecord {
  gid: string;
  transType: TransactionType;
  status: TransactionStatus;
  /** How the transaction was submitted: DTM calls its branches with it. */
  protocol: DtmProtocol;
  rollbackReason?: string;
  /** Parsed `custom_data` (saga orders / concurrency, msg delay), if any. */
  customData?: unknown;
  queryPrepared?: string;
  /**
   * Saga / msg steps and their payloads as DTM answers them: on its boltdb store. On SQL stores
   * (MySQL, Postgres) DTM does not answer them (empty), and on Redis only until its first write
   * after the transaction was created (a status change, a retry): read the branches instead.
   */
  steps: Record<string, string>[];
  /** See {@link steps}: empty on SQL stores, and on Redis once DTM wrote the transaction again. */
  payloads: string[];
  options: StoredTransactionOptions;
  createTime?: Date;
  finishTime?: Date;
  nextCronTime?: Date;
  /** A finished workflow's result, as DTM stores it (base64 of the module's JSON). */
  result?: string;
  branches: BranchRecord[];
}

/** The end of a transaction: a rollback is a result, not an exception. */
export interface FinalResult {
  gid: string;
  status: 'succeed' | 'failed';
  /** Why it rolled back, as the branch said it (`no account zed`), read out of DTM's text (see {@link rawRollbackReason}). */
  rollbackReason?: string;
  /** The rollback reason as DTM stores it (a saga's is `url:<target> return failed: <answer> FAILURE`). */
  rawRollbackReason?: string;
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

/** Options of `waitForFinal` / `submitAndWait`, in seconds. */
export interface WaitOptions {
  /** Give up after this many seconds, with `DtmOutcomeUnknownError` (a `DtmOngoingError`: wait again for the same gid); each status query gets what is left (at least 1 s, at most `lynx.dtm.timeout`). Default 60. */
  timeout?: number;
  /** First delay between queries, in seconds; it grows to 1 s. Default 0.05. */
  pollInterval?: number;
}

/** What `DtmClient.ping` found. */
export interface PingResult {
  /** What the server's `/version` answered. */
  version: string;
  /** The protocol the client talks to DTM with (`lynx.dtm.protocol`). */
  protocol: DtmProtocol;
  /** Round trip of one call on that protocol (HTTP: `/api/ping`; gRPC: a method DTM does not have, answered UNIMPLEMENTED): nothing is created on the server, in milliseconds. */
  latencyMs: number;
}

/**
 * A branch payload. HTTP branches: objects and arrays are JSON-encoded once; strings and Buffers
 * (UTF-8) are sent as they are. gRPC branches: bytes (a `Uint8Array` of protobuf, from any
 * generator), or an object encoded with the method's request type from the module's `grpcProtos`.
 */
export type Payload = object | string | Uint8Array | number | boolean | null | undefined;

/** What a branch answered to a call the module made itself (TCC Try, XA action, msg back-check). */
export interface BranchAnswer {
  /** HTTP: the parsed JSON body (or the text); gRPC: the decoded reply when its proto is known, else the bytes. */
  body: unknown;
  /** The answer as received: the HTTP body or the gRPC reply message. */
  raw: Buffer;
}

/** What a decorated handler is in DTM's protocol. */
export type BranchKind =
  | 'saga-action'
  | 'saga-compensate'
  | 'tcc-try'
  | 'tcc-confirm'
  | 'tcc-cancel'
  | 'xa'
  | 'msg'
  | 'msg-query-prepared';

/** The DTM call a branch handler is serving: from the query DTM (or the app, for TCC try / XA action) sends. */
export interface BranchInfo {
  gid: string;
  transType: string;
  branchId: string;
  /** `action`, `compensate`, `try`, `confirm`, `cancel`, `commit`, `rollback` or `msg`. */
  op: string;
  /**
   * The DTM server the caller named, when the caller is an app (TCC try, XA action, msg back-check
   * by the app). Informative only: the module registers branches with its own configured server.
   */
  dtm?: string;
  /** XA: the URL DTM calls for phase 2. */
  phase2Url?: string;
  /** The pass-through headers this call carried (lower-case names); with `branch_auth_keys`, only those its token signed (and trace context). */
  headers: Record<string, string>;
}

/** Where branch names become targets: the app's branch registry (`DtmBranchRegistry`), as the client sees it. */
export interface BranchResolver {
  /** The target of the decorated branch `name` of `kind`, for a transaction on `protocol`; throws `DtmUsageError` for an unknown name. */
  target(kind: BranchKind, name: string, protocol: DtmProtocol): string;
  /** Whether a decorated branch `name` of `kind` exists. */
  has(kind: BranchKind, name: string): boolean;
  /** The handler DTM calls for branch `name` of `kind` on `protocol`, and its barrier (name; `redis` or the SQL dialect it stores in); `undefined` for no such branch. */
  barrierOf?(kind: BranchKind, name: string, protocol: DtmProtocol): { handler: string; barrier?: string; store?: string } | undefined;
  /** The decorated HTTP route of this app whose target is `url`, if any (for diagnoses, never on a branch call). */
  routeAt?(url: string): { name: string; handler: string; method: string } | undefined;
}
