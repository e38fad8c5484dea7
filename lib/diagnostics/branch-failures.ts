// The last errors this process's branch handlers answered, kept (bounded) so that a transaction
// that does not finish in time can say why: DTM v1.19 stores no branch error (its /query has none).
import { MAX_BRANCH_KEY_LENGTH } from '../transport/branch-keys.js';

/** What a branch handler of this process answered when it failed. */
export interface RecordedBranchFailure {
  /** `Controller.method`. */
  handler: string;
  /** What the call got: the HTTP status (500 for an error the handler threw) or the gRPC status code. */
  status: number;
  /** The error's message (kept in this process only; DTM was answered without it). */
  message: string;
  /** The module's own step that failed around the handler (an XA branch's connection, PREPARE, ...), when the error was not the handler's. */
  step?: string;
  /** When it happened (ms since the epoch). */
  at: number;
}

/** Most failures kept, and most refusals: the oldest goes first. */
const MAX_RECORDED = 500;
/** One record per process, shared by every copy of the package loaded in it (ESM and CommonJS). */
const STORE = Symbol.for('nestjs-dtm:branch-failures');

/**
 * Handler failures, and apart from them the calls the module refused for their token and those that
 * failed before its checks ran (anyone who reaches the app can make those by the thousand: they push
 * out only each other, never a handler's failure).
 */
function stores(): { failures: Map<string, RecordedBranchFailure>; refusals: Map<string, RecordedBranchFailure> } {
  const global = globalThis as { [STORE]?: { failures: Map<string, RecordedBranchFailure>; refusals: Map<string, RecordedBranchFailure> } };
  return (global[STORE] ??= { failures: new Map(), refusals: new Map() });
}

/**
 * Keeps `failure` under `gid` / `branchId` / `op`, the oldest record going first past {@link MAX_RECORDED}.
 * A call whose gid, branch id or op is longer than any key of a transaction this module started
 * ({@link MAX_BRANCH_KEY_LENGTH}: a forged call's, up to the request's header limit) is not kept: no
 * diagnosis could ever look it up, and it would only push out records that can be found.
 */
function keep(records: Map<string, RecordedBranchFailure>, gid: string, branchId: string, op: string, failure: Omit<RecordedBranchFailure, 'at'>): void {
  if (gid.length > MAX_BRANCH_KEY_LENGTH || branchId.length > MAX_BRANCH_KEY_LENGTH || op.length > MAX_BRANCH_KEY_LENGTH) return;
  const key = `${gid}\u0000${branchId}\u0000${op}`;
  records.delete(key);
  records.set(key, { ...failure, at: Date.now() });
  if (records.size > MAX_RECORDED) records.delete(records.keys().next().value!);
}

/** Records that the call `gid` / `branchId` / `op` failed (runs only when a branch handler failed, or a pipe refused its call). */
export function recordBranchFailure(gid: string, branchId: string, op: string, failure: Omit<RecordedBranchFailure, 'at'>): void {
  keep(stores().failures, gid, branchId, op, failure);
}

/**
 * Records that the module refused the call `gid` / `branchId` / `op` for its token (authenticated
 * branch calls), or that it failed before the module's checks ran: kept apart from handler
 * failures, so that forged calls never push those out.
 */
export function recordBranchRefusal(gid: string, branchId: string, op: string, failure: Omit<RecordedBranchFailure, 'at'>): void {
  keep(stores().refusals, gid, branchId, op, failure);
}

/** The last failure (else refusal) of the call `gid` / `branchId` / `op` this process answered, if any. */
export function recordedBranchFailure(gid: string, branchId: string, op: string): RecordedBranchFailure | undefined {
  const key = `${gid}\u0000${branchId}\u0000${op}`;
  const { failures, refusals } = stores();
  return failures.get(key) ?? refusals.get(key);
}
