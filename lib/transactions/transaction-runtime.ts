import type { DtmConfig } from '../config/dtm-config.types.js';
import type { BranchKind, FinalResult, TransactionRecord, WaitOptions } from '../transport/dtm.types.js';
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
   * `DtmClient.waitForFinal`; with `absent`, a gid DTM does not hold throws `absent` (the submit never
   * reached DTM). `targets`: what the transaction put into DTM, which the diagnosis of a wait that ends first may probe.
   */
  waitForFinal(gid: string, options?: WaitOptions, absent?: Error, targets?: readonly Record<string, string>[]): Promise<FinalResult>;
  /** The target (URL) of this app's decorated branch `name` of `kind`, for a transaction on `protocol`; throws for an unknown name. */
  branchTarget(kind: BranchKind, name: string, protocol: DtmProtocol): string;
  /** Whether this app has a decorated branch `name` of `kind`. */
  hasBranch(kind: BranchKind, name: string): boolean;
  /** The targets (by op) of another service's branch `ref` of `kind`, for a transaction on `protocol`, from that service's manifest. */
  remoteBranch(ref: RemoteBranch, kind: RemoteBranchKind, protocol: DtmProtocol): Promise<Record<string, string>>;
  /** A call to a target of `service` failed with `err`: refetch its manifest at the next use if the target looks moved. */
  remoteFailed(service: string, err: unknown): void;
  /** The module's instrumentation seam (absent: nothing observes, failures are only logged). */
  readonly instrumentation?: DtmInstrumentation;
}
