import type { DtmConfig } from '../config/dtm-config.types.js';
import type { BranchKind, FinalResult, TransactionRecord, TransactionType, WaitOptions } from '../transport/dtm.types.js';
import type { DtmTransport } from '../transport/dtm-transport.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import type { RemoteBranch, RemoteBranchKind } from '../contracts/branch-contract.js';
import type { DtmInstrumentation } from '../observability/dtm-instrumentation.js';

/** What a transaction needs from the client that made it (internal). */
export interface TransactionRuntime {
  readonly config: DtmConfig;
  /** The transport of `protocol` (made on first use). */
  transport(protocol: DtmProtocol): DtmTransport;
  /** Headers to pass on to branches from the request being served (none outside a request). */
  passThroughHeaders(): Record<string, string>;
  query(gid: string): Promise<TransactionRecord | null>;
  /**
   * `DtmClient.waitForFinal`; with `submitted` (the wait after this app's own submit), a gid DTM does
   * not hold is submitted again, see {@link SubmittedHere}. `targets`: what the transaction put into
   * DTM, which the diagnosis of a wait that ends first may probe.
   */
  waitForFinal(gid: string, options?: WaitOptions, submitted?: SubmittedHere, targets?: readonly Record<string, string>[]): Promise<FinalResult>;
  /** The target (URL) of this app's decorated branch `name` of `kind`, for a transaction on `protocol`; throws for an unknown name. */
  branchTarget(kind: BranchKind, name: string, protocol: DtmProtocol): string;
  /** The handler DTM calls for this app's branch `name` of `kind` on `protocol`, and its barrier (name, and `redis` or the SQL dialect it stores in); `undefined` for no such branch. */
  branchBarrier?(kind: BranchKind, name: string, protocol: DtmProtocol): { handler: string; barrier?: string; store?: string } | undefined;
  /** Whether this app has a decorated branch `name` of `kind`. */
  hasBranch(kind: BranchKind, name: string): boolean;
  /** The targets (by op) of another service's branch `ref` of `kind`, for a transaction on `protocol`, from that service's manifest. */
  remoteBranch(ref: RemoteBranch, kind: RemoteBranchKind, protocol: DtmProtocol): Promise<Record<string, string>>;
  /** A call to a target of `service` failed with `err`: refetch its manifest at the next use if the target looks moved. */
  remoteFailed(service: string, err: unknown): void;
  /** The module's instrumentation seam (absent: nothing observes, failures are only logged). */
  readonly instrumentation?: DtmInstrumentation;
}

/**
 * The wait after a submit of this app's own. DTM v1.19 goes on after storing a submit failed
 * (dtmsvr/api.go, svcSubmit after saveNew): a saga's or message's branches run with no record, and
 * a transaction prepared first (TCC, XA, a prepared message) stays prepared. A submit DTM
 * acknowledged, or one that may have reached it, is therefore sent again while DTM's record keeps
 * showing it was not stored (no record, or still `prepared`), never reported as "never got it".
 */
export interface SubmittedHere {
  /** The error of the first submit, when it may or may not have reached DTM (none: DTM acknowledged it). */
  readonly lost?: Error;
  /** Whether DTM may hold no record of it (a saga or message submitted whole); false for TCC / XA, which DTM holds since their prepare. */
  readonly mayBeAbsent: boolean;
  /** The transaction's type: what DTM does with one it holds prepared (rolls a TCC / XA back at its timeout_to_fail, back-checks a message). */
  readonly transType: TransactionType;
  /** The protocol of its submit: a submit again over gRPC first waits for a channel to DTM backing off its reconnect (see `DtmTransport.connected`). */
  readonly protocol: DtmProtocol;
  /** Sends the same submit again, under the same gid. */
  again(): Promise<void>;
}
