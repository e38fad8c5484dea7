// The state of one branch call being served, left on its carrier (the HTTP request, the gRPC
// call) by the guard and read by the filter and the wrapped handler.
import type { ExecutionContext } from '@nestjs/common';
import type { BarrierConnection } from '../barrier/barrier.types.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import type { XaDatabase } from '../xa/xa.types.js';
import type { BranchCarrier } from './branch-transport.js';
import type { BranchInfo, TransactionRecord } from '../transport/dtm.types.js';
import type { BranchObservation, DtmInstrumentation } from '../observability/dtm-instrumentation.js';
import type { DtmBarrierDecision } from '../observability/dtm-events.js';

/** What a branch handler's local transaction needs from the module serving the app (one per app). */
export interface DtmBranchRuntime {
  barrierConnections: Map<string, BarrierConnection>;
  xaDatabases: Map<string, XaDatabase>;
  config: DtmConfig;
  /** `DtmClient.query` of the module: DTM's record of a transaction, from the configured server. */
  query(gid: string): Promise<TransactionRecord | null>;
  /** `DtmClient.xaLocalTransaction` of the module. */
  xaLocalTransaction<H, T>(branch: BranchInfo, db: XaDatabase<H>, business: (handle: H) => Promise<T>): Promise<T | undefined>;
  /** The module's instrumentation seam (absent: nothing observes). */
  instrumentation?: DtmInstrumentation;
  /** Whether `path` (no query) is the path of one of this app's decorated HTTP routes (`DtmBranchRegistry.isHttpRoutePath`). */
  isHttpRoutePath?(path: string): boolean;
}

/** What the guard leaves on a call's carrier: the handler serving it (for the filter), and the serving module's runtime. */
export interface BranchCallState {
  context: ExecutionContext;
  runtime?: DtmBranchRuntime;
  /**
   * Why the handler must not run although the call succeeds: an undo op (compensate, cancel,
   * rollback) whose gid or branch id breaks the rule, or whose trans_type is none DTM sends; its action was refused, so nothing is to undo.
   */
  skip?: string;
  /** Set once the wrapped handler was called (not skipped): an error answered after that (an interceptor's) is not a pipe's refusal of the payload, and the handler ran. */
  ran?: boolean;
  /** The call's observation, while its handler runs (absent: nothing observes). */
  observation?: BranchObservation;
  /** With authenticated calls, once verified: what its token signed of the transaction (see {@link VerifiedCall}). */
  verified?: VerifiedCall;
}

/** Where the guard leaves the {@link BranchCallState} on the carrier (HTTP request, gRPC call). */
export const BRANCH_CALL = Symbol('nestjs-dtm:branch-call');

/** The errors the module refused branch calls with before their handler ran (see {@link refusal}). */
const refusals = new WeakSet<object>();

/**
 * Marks `error` as the module's refusal of a branch call before its handler ran, because it is not
 * a call the handler may serve: DTM's keys missing, an op the handler does not serve, a gid or
 * branch id that breaks the key rule (the guard), a refused authentication. Returns `error`.
 */
export function refusal<E extends object>(error: E): E {
  refusals.add(error);
  return error;
}

/** Whether `error` is a refusal of the module ({@link refusal}), not an error of the call's pipes or handler. */
export function isRefusal(error: unknown): boolean {
  return typeof error === 'object' && error !== null && refusals.has(error);
}

/** The state the guard left on `carrier`. */
export function branchCallOf(carrier: BranchCarrier | undefined): BranchCallState | undefined {
  return (carrier as { [BRANCH_CALL]?: BranchCallState } | undefined)?.[BRANCH_CALL];
}

/** The observed calls whose `BranchInfo` `@BranchContext()` gave out. */
const observedCallOfInfo = new WeakMap<BranchInfo, BranchCallState>();

/** The forwarded headers the verified calls whose `BranchInfo` `@BranchContext()` gave out signed (authenticated calls). */
const verifiedOfInfo = new WeakMap<BranchInfo, VerifiedCall>();

/** Remembers that `info` describes the call `call` (when something observes it, for {@link barrierDecisionsOf}; when it was verified, for {@link verifiedCallOf}). */
export function linkBranchInfo(info: BranchInfo, call: BranchCallState | undefined): void {
  if (call?.runtime?.instrumentation?.active) observedCallOfInfo.set(info, call);
  if (call?.verified !== undefined) verifiedOfInfo.set(info, call.verified);
}

/** What `DtmClient.barrier(info)` must heed of the call a `BranchInfo` of `@BranchContext()` describes. */
export interface BarrierMark {
  /** The handler already runs behind a SQL barrier (`@UseBarrier`, `{ barrier }`): its `DtmClient.barrier(info)` must not guard SQL again. */
  behindBarrier?: true;
  /**
   * An undo call (compensate, cancel, rollback) on a route without a branch decorator whose gid,
   * branch id or trans_type breaks the rules: why its barrier writes nothing and skips the business.
   */
  refusal?: string;
}

/** The mark of every `BranchInfo` given to a handler behind a SQL barrier (one object: nothing allocated per call). */
const BEHIND_BARRIER: BarrierMark = Object.freeze({ behindBarrier: true });

/** The marks of the `BranchInfo`s `@BranchContext()` gave out (one lookup per `DtmClient.barrier()`). */
const barrierMarks = new WeakMap<BranchInfo, BarrierMark>();

/** Remembers that `info` was given to a handler the module already runs behind a SQL barrier. */
export function markBehindBarrier(info: BranchInfo): void {
  barrierMarks.set(info, BEHIND_BARRIER);
}

/** Remembers that `info`, an undo call on a route without a branch decorator, breaks the rules (`refusal` says how): its barrier must skip it. */
export function markRefusedUndo(info: BranchInfo, refusal: string): void {
  barrierMarks.set(info, { refusal });
}

/** What `DtmClient.barrier(info)` must heed of `info` (see {@link BarrierMark}); undefined for most calls. */
export function barrierMarkOf(info: BranchInfo): BarrierMark | undefined {
  return barrierMarks.get(info);
}

/** What the token of the verified call `info` describes signed of its transaction; undefined when no token was checked. */
export function verifiedCallOf(info: BranchInfo): VerifiedCall | undefined {
  return verifiedOfInfo.get(info);
}

/** What a verified call's token signed of its transaction, which DTM sends to every branch of it (a nested TCC's sub-branches sign the same). */
export interface VerifiedCall {
  /** The forwarded headers' text; none when it signed none. */
  headers?: string;
  /** When the transaction's tokens were issued; none from an app that signed no issue time. */
  issued?: string;
}

/** Where the barrier of the call `info` describes tells its decisions: the call's observation; undefined when nothing observes it. */
export function barrierDecisionsOf(info: BranchInfo): ((decision: DtmBarrierDecision) => void) | undefined {
  return barrierDecisionsInto(observedCallOfInfo.get(info)?.observation);
}

/** A barrier's `onDecision` that records the decision on `observation` (undefined without one). */
export function barrierDecisionsInto(observation: BranchObservation | undefined): ((decision: DtmBarrierDecision) => void) | undefined {
  return observation && ((decision) => (observation.barrier = decision));
}
