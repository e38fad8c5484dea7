// The transport seam: everything nestjs-dtm says to the DTM server and to the branches it calls
// itself, in DTM's terms. One implementation per protocol (http/, grpc/); each builds its wire
// shapes in one place. The transaction core (transactions/) speaks only this.
import type { DtmProtocol } from '../errors/dtm-error.js';
import type { BranchTarget } from './branch-target.js';
import type {
  BranchAnswer,
  BranchStatus,
  ListFilter,
  ListPage,
  Payload,
  PingResult,
  TransactionRecord,
  TransactionStatus,
  TransactionType,
} from './dtm.types.js';

/** What a gid from DTM's newGid may be: 1 to 128 (DTM's `gid` column) letters, digits and `. _ : @ = -` (DTM makes 22 letters and digits). */
const DTM_GID = /^[A-Za-z0-9_.:@=-]{1,128}$/;

/** Whether `value`, what a server answered to newGid, is a gid the module can use (in URLs, SQL XA ids, gRPC metadata). */
export function isDtmGid(value: unknown): value is string {
  return typeof value === 'string' && DTM_GID.test(value);
}

/** A branch payload as a transport sends it (HTTP: text; gRPC: bytes). Made by {@link DtmTransport.encode}. */
export type EncodedPayload = string | Uint8Array;

/** Transaction options as DTM takes them, every value resolved (seconds). */
export interface ResolvedOptions {
  timeoutToFail: number;
  /** Unset: none is sent (DTM's own applies, as with DTM's Go SDK). */
  retryInterval?: number;
  branchTimeout: number;
  retryLimit?: number;
  waitResult?: boolean;
  /** Headers DTM adds to every branch call (lower-case names). */
  branchHeaders: Record<string, string>;
}

/** What a prepare / submit / abort tells DTM about a global transaction. */
export interface TransactionRequest {
  gid: string;
  transType: TransactionType;
  options: ResolvedOptions;
  /** Saga / msg steps: `{ action, compensate }` or `{ action }` (an empty string: nothing to call). */
  steps?: Record<string, string>[];
  /** One payload per step. */
  payloads?: EncodedPayload[];
  /** JSON text (saga concurrency and orders, msg delay, workflow input). */
  customData?: string;
  concurrent?: boolean;
  /** Msg back-check (or workflow resume) target. */
  queryPrepared?: string;
  rollbackReason?: string;
  /** Workflow submit: `status`, `rollback_reason`, `result`. */
  extra?: Record<string, string>;
}

/** What `prepareWorkflow` answers: the workflow's status and every step DTM recorded for it. */
export interface WorkflowProgress {
  /** The gid of the transaction DTM answered with (DTM's MySQL store finds gids without case: it may differ in case); the gRPC API never returns it. */
  gid?: string;
  status: TransactionStatus;
  rollbackReason?: string;
  /** The submitted result as DTM stores it (base64 text); the gRPC API never returns it. */
  result?: string;
  /** The custom data DTM stores with it (the first prepare's: its name and input); the gRPC API never returns it. */
  customData?: string;
  /** The type of the transaction DTM holds under the gid (another one than a workflow when the gid was used before); the gRPC API never returns it. */
  transType?: TransactionType;
  progresses: { branchId: string; op: string; status: BranchStatus; data: Buffer }[];
  /** The transaction DTM holds under the gid as it answered it (its stored options, protocol; a new one's are the request's); the gRPC API never returns it. */
  stored?: TransactionRecord;
}

/** A branch the module registers with DTM (TCC: its confirm and cancel; XA: its phase-2 target). */
export interface BranchRegistration {
  gid: string;
  transType: TransactionType;
  branchId: string;
  /** What DTM sends to the registered targets (TCC: the Try's payload; XA: nothing). */
  payload?: EncodedPayload;
  /** The string fields DTM stores with the branch: `confirm` / `cancel`, `url`, ... */
  fields: Record<string, string>;
}

/** A branch call the module makes itself: TCC Try, XA action, a msg back-check asked by the app. */
export interface DirectBranchCall {
  target: BranchTarget;
  gid: string;
  transType: TransactionType;
  branchId: string;
  op: string;
  /** Absent: no body (a msg back-check). */
  payload?: EncodedPayload;
  headers: Record<string, string>;
  timeoutSeconds: number;
  /** XA action: where DTM calls phase 2. */
  phase2Target?: string;
}

/** One protocol's conversation with DTM and with the branches the module calls itself. */
export interface DtmTransport {
  readonly protocol: DtmProtocol;
  /** How `payload` travels to `target` on this transport; throws `DtmUsageError` when it cannot. */
  encode(payload: Payload, target: BranchTarget): EncodedPayload;
  /** Refuses (`DtmUsageError`) a target DTM cannot call in a transaction submitted on this transport. */
  checkTarget(target: BranchTarget, gid: string): void;
  /** Refuses (`DtmUsageError`) a gid or options DTM could not pass to this transport's branches. */
  checkTransaction(gid: string, options: ResolvedOptions): void;
  newGid(): Promise<string>;
  prepare(request: TransactionRequest): Promise<void>;
  submit(request: TransactionRequest): Promise<void>;
  abort(request: TransactionRequest): Promise<void>;
  /** Creates the workflow `request.gid` (prepared), or finds it: its status and recorded progress. */
  prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress>;
  /** Registers a branch with the module's own DTM server (never one a branch call named). */
  registerBranch(registration: BranchRegistration): Promise<void>;
  callBranch(call: DirectBranchCall): Promise<BranchAnswer>;
  /** DTM's record of `gid` (null: none); within `timeoutSeconds` when given (what is left of a wait), else `lynx.dtm.timeout`. */
  query(gid: string, timeoutSeconds?: number): Promise<TransactionRecord | null>;
  /** A page of DTM's transactions (no branches); within `timeoutSeconds` when given, else `lynx.dtm.timeout`. */
  list(filter: ListFilter, timeoutSeconds?: number): Promise<ListPage>;
  forceStop(gid: string): Promise<void>;
  ping(): Promise<PingResult>;
  /**
   * Resolves once the connection to DTM a call would wait for is ready, within `withinMs`; at once
   * when no call would fail for the lack of one (gRPC: unless its channel backs off a reconnect).
   * Absent: no such state (HTTP).
   */
  connected?(withinMs: number): Promise<void>;
  /** Closes connections. */
  close(): void;
}
