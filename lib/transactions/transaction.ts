import { AUTH_CALL_HEADER, AUTH_HEADER, AUTH_HEADERS_HEADER, AUTH_ISSUED_HEADER, authEntryKey, headersOfText, isSignedHeader, signedHeaders, targetPath, withPhase2, type BranchAuth, type SignedHeaders } from '../auth/branch-auth.js';
import type { VerifiedCall } from '../branches/branch-call.js';
import { parseAddress, parseTarget, type BranchTarget } from '../transport/branch-target.js';
import type { BranchAnswer, BranchKind, Payload, TransactionOptions, TransactionRecord, TransactionType } from '../transport/dtm.types.js';
import type { DtmTransport, EncodedPayload, ResolvedOptions, TransactionRequest } from '../transport/dtm-transport.js';
import { BRANCH_TIMEOUT_MAX, DTM_INTEGER, DTM_SECONDS_MAX, NODE_TIMER } from '../config/dtm-config.keys.js';
import { MESSAGES } from '../dtm.messages.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { readFailureReason } from '../diagnostics/failure-reason.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { assertTransactionGid } from '../transport/branch-keys.js';
import { parseAnswer } from '../transport/payload.js';
import { isForbiddenBranchHeader } from '../config/dtm-config.keys.js';
import { closest } from '../config/resolve-dtm-config.js';
import { refusedForStatus } from '../transport/dtm-refusal.js';
import { mayHaveReachedDtm, wasResent } from '../transport/dtm-transient.js';
import { DtmOutcomeUnknownError } from '../errors/dtm-outcome-unknown.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { BranchIdGenerator } from './branch-id.generator.js';
import { schemaProblem, type RemoteBranch, type RemoteBranchKind } from '../contracts/branch-contract.js';
import { DtmRemoteBranchError } from '../errors/dtm-remote-branch.error.js';
import type { TransactionRuntime } from './transaction-runtime.js';
import { UNOBSERVED, type DtmInstrumentation, type TransactionObservation } from '../observability/dtm-instrumentation.js';
import type { DtmTransactionOutcome } from '../observability/dtm-events.js';
import { messageOf } from '../errors/text-of.js';

/** Throws `DtmUsageError` unless `gid` is usable as a DTM global transaction id. */
export function assertGid(gid: unknown): asserts gid is string {
  if (typeof gid !== 'string' || gid.length === 0 || /[\s;]/.test(gid)) throw new DtmUsageError(MESSAGES.badGid(gid));
}

/**
 * Throws `DtmUsageError` unless `value` (the option `option`) is a whole number from `min` to `max`:
 * DTM reads its options as integers (a fraction or 1e20 fails the whole request with a 500), and
 * keeps its intervals in 32-bit integers.
 */
export function assertWholeNumber(option: string, value: unknown, min: number, max: number, unit: string, why: string, gid?: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new DtmUsageError(MESSAGES.optionRange(option, min, max, unit, why, value), { gid });
  }
}

/** The keys of {@link TransactionOptions}. */
const OPTION_KEYS: ReadonlySet<string> = new Set(['protocol', 'timeoutToFail', 'retryInterval', 'branchTimeout', 'retryLimit', 'waitResult', 'branchHeaders']);

/** Names other than the module's that mean one of its options: DTM's and its Go SDK's request timeout. */
const OPTION_ALIASES: Readonly<Record<string, string>> = { request_timeout: 'branchTimeout', requestTimeout: 'branchTimeout' };

/**
 * Refuses (`DtmUsageError`) a key of `o` that is no transaction option (DTM's snake_case name, a
 * typo): it would be dropped without a word, the transaction going with the default. One given as
 * `undefined` changes nothing, whatever its name.
 */
function assertKnownOptions(o: TransactionOptions, gid: string): void {
  for (const key in o) {
    if (OPTION_KEYS.has(key) || (o as Record<string, unknown>)[key] === undefined) continue;
    throw new DtmUsageError(MESSAGES.unknownTransactionOption(key, OPTION_ALIASES[key] ?? closest(key, [...OPTION_KEYS]), [...OPTION_KEYS]), { gid });
  }
}

/** Checks the transaction options given in code: known keys ({@link assertKnownOptions}), numbers within the ranges the `lynx.dtm` keys have. */
function assertOptions(o: TransactionOptions, gid: string): void {
  assertKnownOptions(o, gid);
  if (o.timeoutToFail !== undefined) assertWholeNumber('timeoutToFail', o.timeoutToFail, 0, DTM_SECONDS_MAX, 'seconds', DTM_INTEGER, gid);
  if (o.retryInterval !== undefined) assertWholeNumber('retryInterval', o.retryInterval, 1, DTM_SECONDS_MAX, 'seconds', DTM_INTEGER, gid);
  if (o.branchTimeout !== undefined) assertWholeNumber('branchTimeout', o.branchTimeout, 1, BRANCH_TIMEOUT_MAX, 'seconds', NODE_TIMER, gid);
  if (o.waitResult !== undefined && typeof o.waitResult !== 'boolean') throw new DtmUsageError(MESSAGES.optionNotBoolean('waitResult', o.waitResult), { gid });
  if (o.retryLimit !== undefined) {
    // DTM v1.19 reads a retry limit only above 0: 0 is no limit at all, the opposite of "no re-run"
    if (o.retryLimit === 0) throw new DtmUsageError(MESSAGES.retryLimitZero(), { gid });
    assertWholeNumber('retryLimit', o.retryLimit, 1, Number.MAX_SAFE_INTEGER, 'retries', 'the largest whole number a JavaScript number holds exactly', gid);
  }
}

/**
 * Where a nested TCC flags the `BranchInfo` of the Try it runs in with its first sub-branch call
 * (registration or Try) that failed: the module's branch handling reads it once the Try's handler
 * returned, and answers FAILURE instead of the handler's success (a Try that caught the failure and
 * went on would have DTM confirm the failed sub-branch).
 */
export const NESTED_FAILURE = Symbol('nestjs-dtm:nested-tcc-failure');

/** What {@link NESTED_FAILURE} holds: the failed sub-branch call. */
export interface NestedFailure {
  gid: string;
  branchId: string;
  op: 'register' | 'try' | 'action';
  error: unknown;
}

/**
 * The sub-branch ids of the Try whose `BranchInfo` nested TCCs were made with: one generator per
 * served call, so that a Try making two nested TCCs (two sub-services, one made in a loop) numbers
 * their sub-branches `0101`, `0102`, ... instead of both starting at `0101`, which DTM refuses
 * (a second registration of one branch id: "storage: UniqueKeyConflict").
 */
const SUB_BRANCH_IDS = new WeakMap<object, BranchIdGenerator>();

/** The sub-branch ids of the nested TCCs under `parent` (shared by all those made with its `BranchInfo`). */
function subBranchIds(parent: ParentBranch | undefined): BranchIdGenerator {
  const info = parent?.info;
  if (!info) return new BranchIdGenerator(parent?.branchId ?? '');
  let ids = SUB_BRANCH_IDS.get(info);
  if (!ids) SUB_BRANCH_IDS.set(info, (ids = new BranchIdGenerator(parent.branchId)));
  return ids;
}

/** Where a transaction sits when it is a branch of another app's transaction (nested TCC). */
export interface ParentBranch {
  branchId: string;
  /** The `BranchInfo` given to `tccFromBranch()`: flagged ({@link NESTED_FAILURE}) with the first sub-branch call that failed; the key of its sub-branch ids ({@link subBranchIds}). */
  info?: object;
  /** With authenticated calls: what the parent call's verified token signed of the transaction (forwarded headers, issue time), which DTM sends to its sub-branches too; the sub-branches' calls carry them. */
  verified?: VerifiedCall;
}

/**
 * The one transaction core under saga, msg, TCC and XA: the gid and type, the options (resolved
 * once, when the transaction is created: module configuration, then the transaction's own
 * options, then the pass-through headers of the request being served), the protocol and its
 * transport, branch ids, and parsing, resolving and checking branch targets before anything is sent.
 */
export abstract class Transaction {
  /** How the module talks to DTM for this transaction. */
  readonly protocol: DtmProtocol;
  protected transport: DtmTransport;
  protected readonly ids: BranchIdGenerator;
  private resolved: ResolvedOptions;
  private overrides: TransactionOptions;
  private readonly inboundHeaders: Record<string, string>;
  /** Whether DTM accepted this object's prepare: from then on the transaction DTM holds under the gid is this one. */
  private created = false;
  /** The first call that sent the transaction to DTM (`prepare()`, `submit()`), once one may have reached it: DTM keeps the options it carried. */
  private sentBy?: string;
  /** The observation of this transaction (when something observes): from its first call to DTM to its outcome. */
  private observation?: TransactionObservation;
  /**
   * What this object's submits did: `taken` once DTM took one (answered it, or with waitResult
   * answered its first round: the transaction DTM holds under the gid is this one); `maybe` once one
   * may have made DTM act (lost on the way after it was sent: a later one's refusal "current
   * status ..." may be of its doing); else `none`.
   */
  private submitState: 'none' | 'maybe' | 'taken' = 'none';
  /** The status DTM's record showed when the last submit was answered as not finished ({@link submitRequest}'s `DtmOngoingError`). */
  protected unfinishedStatus?: string;
  /** The `DtmFailureError` {@link submitRequest} (with waitResult) or {@link statusAfterUndecidedSubmit} threw for a transaction DTM's record showed rolled back (`failed`): reported `failed`, not `error`. */
  private rolledBack?: DtmFailureError;
  /** The `DtmOngoingError` {@link submitRequest} threw for a transaction DTM took and still drives (with waitResult, its first round unfinished: `submitted`, `aborting`), or the error a subclass restates it with: reported `submitted`, not `error`. */
  protected goneOn?: unknown;
  /** Whether this gRPC transaction has an HTTP branch target (DTM calls it over HTTP, with the branch headers): the headers are then held to the HTTP bound too. */
  private httpTargets = false;
  /** With authenticated calls, the issue time its tokens sign when not now (see {@link signAsIssued}). */
  private issuedAt?: string;

  protected constructor(
    protected readonly runtime: TransactionRuntime,
    /** The global transaction id. */
    readonly gid: string,
    /** DTM's transaction type. */
    readonly transType: TransactionType,
    options: TransactionOptions | undefined = {},
    protected readonly parent?: ParentBranch,
  ) {
    assertTransactionGid(gid);
    options ??= {}; // null from plain JavaScript: no options
    if (options.protocol !== undefined && options.protocol !== 'http' && options.protocol !== 'grpc') throw new DtmUsageError(MESSAGES.badProtocol(options.protocol), { gid });
    this.protocol = options.protocol ?? runtime.config.protocol;
    this.transport = runtime.transport(this.protocol);
    this.inboundHeaders = runtime.passThroughHeaders();
    this.overrides = options;
    this.resolved = this.resolve();
    this.ids = subBranchIds(parent);
  }

  /**
   * Moves this transaction to `protocol` before anything of it that depends on the transport was
   * sent (a nested TCC, see `Tcc`); its options are checked again for that transport.
   */
  protected switchProtocol(protocol: DtmProtocol): void {
    (this as { protocol: DtmProtocol }).protocol = protocol;
    this.transport = this.runtime.transport(protocol);
    this.resolved = this.resolve();
  }

  /** The options this transaction is sent with (seconds): module defaults overridden by the transaction's. */
  get options(): Readonly<ResolvedOptions> {
    return this.resolved;
  }

  /** The module's instrumentation seam. */
  protected get instrumentation(): DtmInstrumentation {
    return this.runtime.instrumentation ?? UNOBSERVED;
  }

  /** Starts observing the transaction (once; nothing when nothing observes): its span, whose trace context then goes to DTM with every request. */
  protected observeStart(): void {
    if (this.observation) return;
    this.observation = this.instrumentation.startTransaction(this.gid, this.transType, this.protocol, this.inboundHeaders, this.runtime.config.passTraceContext !== false);
  }

  /** Takes over `other`'s observation, which `other` then no longer ends: one observation for what the app sees as one transaction. */
  protected takeObservation(other: Transaction): void {
    this.observation = other.observation;
    other.observation = undefined;
  }

  /**
   * Ends observing the transaction with `outcome` (nothing when it is not observed, or already
   * ended); an `error` that is the rollback DTM holds (a waitResult submit's, see {@link rolledBack}) is `failed`,
   * one that says DTM took the submit and goes on with it ({@link goneOn}) is `submitted`.
   */
  protected observeEnd(outcome: DtmTransactionOutcome, error?: unknown): void {
    const observation = this.observation;
    if (!observation) return;
    this.observation = undefined;
    if (outcome === 'error' && error !== undefined) {
      if (error === this.rolledBack) outcome = 'failed';
      else if (error === this.goneOn) outcome = 'submitted';
    }
    this.instrumentation.endTransaction(observation, outcome, error);
  }

  /** Parks the observation (a message prepared and not submitted, see `DtmInstrumentation.park`): it ends `prepared` after `seconds`, or when the app closes, unless a submit ends it first. */
  protected parkObservation(seconds: number): void {
    if (this.observation) this.instrumentation.park(this.observation, seconds);
  }

  /** Takes the observation off the parked ones: what comes next (a submit) ends it. */
  protected unparkObservation(): void {
    if (this.observation) this.instrumentation.unpark(this.observation);
  }

  /** DTM's record of the gid now (queried with the transaction's span active), or `undefined` when the query failed: a check after a prepare then leaves the prepare as DTM answered it. */
  protected async recordIfKnown(): Promise<TransactionRecord | null | undefined> {
    try {
      return await this.withinObservation((gid) => this.runtime.query(gid), this.gid);
    } catch {
      return undefined;
    }
  }

  /**
   * After a submit of a transaction DTM holds prepared (a TCC / XA whose body ran, a message this
   * object prepared) was left undecided (`err`: no answer in time, a broken connection, an answer not
   * DTM's), the status DTM's record then shows (one query, on that error path only) when it says the
   * submit took (`succeed`, `submitted` when `submittedTook`) or did not (`prepared`), or `undefined`
   * when the query failed after a submit that never reached DTM (DTM holds it prepared). Anything
   * else is thrown: `DtmFailureError` with DTM's rollback reason for `failed` (reported failed: DTM
   * rolled it back, a TCC's / XA's timeoutToFail passed, a message's back-check found its local
   * transaction rolled back); `DtmOutcomeUnknownError` `unknown` (`unknownText` of the query's error)
   * when DTM answers no query after a submit that may have reached it (DTM killed or restarting as it
   * took the submit); `submitted` (reported submitted) when `submittedTook` is false (with
   * waitResult, DTM answers only once its first round ended, which can outlast `lynx.dtm.timeout`);
   * `absent` when DTM holds no record although it took the prepare (lost, or the query reached
   * another DTM: `localCommitted` for a message whose local transaction committed); `aborting` (or
   * any other) as DTM holds it.
   */
  protected async statusAfterUndecidedSubmit(err: unknown, submittedTook: boolean, unknownText: (queryError: string) => string, localCommitted = false): Promise<'succeed' | 'submitted' | 'prepared' | undefined> {
    let record: TransactionRecord | null;
    try {
      record = await this.withinObservation((gid) => this.runtime.query(gid), this.gid);
    } catch (queryError) {
      if (!mayHaveReachedDtm(err)) return undefined; // never reached DTM: it holds it prepared
      throw new DtmOutcomeUnknownError(unknownText((queryError as Error).message), this.gid, 'unknown', { cause: err });
    }
    const status = record?.status ?? 'absent';
    const cause = (err as Error).message;
    if (status === 'succeed' || status === 'prepared' || (status === 'submitted' && submittedTook)) return status;
    if (status === 'failed') {
      const raw = record?.rollbackReason || 'FAILURE';
      throw (this.rolledBack = new DtmFailureError(readFailureReason(raw).message, { raw, gid: this.gid, protocol: this.protocol, cause: err }));
    }
    if (status === 'submitted') {
      const taken = new DtmOutcomeUnknownError(MESSAGES.submitTakenUnanswered(this.gid, status, cause), this.gid, status, { cause: err });
      this.goneOn = taken;
      throw taken;
    }
    if (status === 'absent') throw new DtmOutcomeUnknownError(MESSAGES.preparedRecordLost(this.gid, this.transType, cause, localCommitted), this.gid, status, { cause: err });
    throw new DtmOutcomeUnknownError(MESSAGES.submitOutcomeUnknown(this.gid, status, cause), this.gid, status, { cause: err });
  }

  /** `fn(arg)` (the app's body) with the transaction's span active (nothing made when it is not observed). */
  protected withinObservation<A, T>(fn: (arg: A) => T, arg: A): T {
    return this.observation ? this.instrumentation.within(this.observation, () => fn(arg)) : fn(arg);
  }

  /**
   * Reports (log, `abort.failed`) that the abort after the body's error `cause` failed with `error`;
   * when DTM refused it (its FAILURE: the transaction is no longer prepared), with the status DTM
   * holds it in, read after the refusal (rolled back already, or a message its back-check delivered).
   */
  protected async abortFailed(error: unknown, cause: unknown): Promise<void> {
    const status = error instanceof DtmFailureError ? (await this.recordIfKnown())?.status : undefined;
    this.instrumentation.abortFailed(this.gid, this.transType, this.protocol, error, cause, status);
  }

  /** The headers DTM adds to branch calls: the transaction's, with the trace context of its span when it has one. */
  private get branchHeaders(): Record<string, string> {
    const trace = this.observation?.headers;
    return trace ? { ...this.resolved.branchHeaders, ...trace } : this.resolved.branchHeaders;
  }

  /**
   * Merges more options into the transaction's own (`branchHeaders` name by name, case-insensitively);
   * the protocol cannot change, and nothing can once the transaction was sent to DTM (`DtmUsageError`).
   */
  protected mergeOptions(options: TransactionOptions): void {
    if (typeof options !== 'object' || options === null) throw new DtmUsageError(MESSAGES.notAnObject('the options', options), { gid: this.gid });
    if (options.protocol !== undefined && options.protocol !== this.protocol) throw new DtmUsageError(MESSAGES.protocolFixed(this.gid, this.protocol), { gid: this.gid });
    if (this.sentBy) throw new DtmUsageError(MESSAGES.optionsAfterSent(this.transType, this.gid, this.sentBy), { gid: this.gid });
    const previous = this.overrides;
    const merged = { ...previous, ...options };
    const [earlier, later] = [previous.branchHeaders, options.branchHeaders];
    if (earlier || later) merged.branchHeaders = earlier && later ? overrideHeaders(earlier, later, this.gid) : (later ?? earlier);
    this.overrides = merged;
    try {
      this.resolved = this.resolve();
    } catch (err) {
      this.overrides = previous; // refused options leave the transaction as it was
      throw err;
    }
  }

  private resolve(): ResolvedOptions {
    const { config } = this.runtime;
    const o = this.overrides;
    assertOptions(o, this.gid);
    const resolved: ResolvedOptions = {
      // a saga has no timeout unless one is set for it (DTM's default: forward recovery, retried until done)
      timeoutToFail: o.timeoutToFail ?? (this.transType === 'saga' ? config.sagaTimeout : config.transactionTimeout),
      branchTimeout: o.branchTimeout ?? config.branchTimeout,
      branchHeaders: o.branchHeaders ? overrideHeaders(this.inboundHeaders, o.branchHeaders, this.gid) : this.inboundHeaders,
    };
    const verified = this.parent?.verified;
    if (verified) {
      // a sub-branch (nested TCC) with authenticated calls: its calls carry the headers DTM holds for
      // the transaction (those the parent call's token signed), as DTM's own calls of it do, whatever
      // this app passes on; trace propagation is the request's
      if (o.branchHeaders) throw new DtmUsageError(MESSAGES.nestedTccHeaders(), { gid: this.gid });
      const headers: Record<string, string> = {};
      for (const name in this.inboundHeaders) if (!isSignedHeader(name)) headers[name] = this.inboundHeaders[name];
      resolved.branchHeaders = Object.assign(headers, headersOfText(verified.headers ?? ''));
    }
    // no retry interval unless the app set one: DTM's own then applies (the first look at a transaction after a shorter timeoutToFail)
    const retryInterval = o.retryInterval ?? config.retryInterval;
    if (retryInterval !== undefined) resolved.retryInterval = retryInterval;
    if (o.retryLimit !== undefined) {
      // DTM v1.19 reads retry_limit in its saga processor only: stored with another transaction, it would never apply
      if (this.transType !== 'saga') throw new DtmUsageError(MESSAGES.retryLimitNotSaga(this.transType, this.gid), { gid: this.gid });
      resolved.retryLimit = o.retryLimit;
    }
    if (o.waitResult) resolved.waitResult = true;
    // with authenticated calls, when the tokens were issued (every token signs it; a dtm-* header, which
    // no app's headers hold): now; a sub-branch's, its transaction's
    if (config.branchAuthKeys) {
      const issued = this.parent ? verified?.issued : (this.issuedAt ?? String(Math.floor(Date.now() / 1000)));
      if (issued !== undefined) resolved.branchHeaders = { ...resolved.branchHeaders, [AUTH_ISSUED_HEADER]: issued };
    }
    this.checkTransaction(resolved);
    if (config.branchAuthKeys) checkSignedHeaderValues(resolved.branchHeaders, this.gid, this.protocol);
    return resolved;
  }

  /**
   * A step's or branch's target: a URL, a gRPC target, `''`, or the name of this app's decorated
   * branch of `kind` (resolved for this transaction's protocol). Refused with `DtmUsageError`, before
   * anything is sent, when DTM cannot call it in a transaction on this protocol, or when it must be
   * called (`mustCall`: a TCC Try, an XA action, a back-check) and is empty.
   */
  protected target(spec: string, kind: BranchKind, role: string, mustCall = false): BranchTarget {
    const parsed = parseTarget(spec, this.gid);
    const target = parsed.kind === 'name' ? parseAddress(this.runtime.branchTarget(kind, parsed.name, this.protocol), this.gid) : parsed;
    if (target.kind === 'none' && mustCall) throw new DtmUsageError(MESSAGES.emptyTarget(role), { gid: this.gid });
    if (target.kind === 'topic' && kind !== 'msg') throw new DtmUsageError(MESSAGES.topicOutsideMsg(spec, role), { gid: this.gid });
    this.transport.checkTarget(target, this.gid);
    if (target.kind === 'http' && !this.httpTargets && this.protocol === 'grpc') this.takeHttpTarget();
    return target;
  }

  /**
   * Checks `options` with this transaction's transport; a gRPC transaction with an HTTP branch
   * target also with the HTTP transport's rules (its branch headers' bound): DTM calls that branch
   * over HTTP with them.
   */
  private checkTransaction(options: ResolvedOptions): void {
    this.transport.checkTransaction(this.gid, options);
    if (this.httpTargets) this.runtime.transport('http').checkTransaction(this.gid, options);
  }

  /** A gRPC transaction's first HTTP branch target: its branch headers checked as DTM sends them over HTTP (refused: the target is not taken). */
  private takeHttpTarget(): void {
    this.runtime.transport('http').checkTransaction(this.gid, this.resolved);
    this.httpTargets = true;
  }

  /**
   * The targets (by op) of another service's branch `ref` of `kind`, from its manifest, checked as
   * {@link target} checks the targets given in code.
   */
  protected async remoteTargets(ref: RemoteBranch, kind: RemoteBranchKind): Promise<Record<string, BranchTarget>> {
    const targets = await this.runtime.remoteBranch(ref, kind, this.protocol);
    const parsed: Record<string, BranchTarget> = {};
    for (const op in targets) {
      const target = parseAddress(targets[op], this.gid);
      this.transport.checkTarget(target, this.gid);
      if (target.kind === 'http' && !this.httpTargets && this.protocol === 'grpc') this.takeHttpTarget();
      parsed[op] = target;
    }
    return parsed;
  }

  /**
   * Checks payloads given to other services' branches against the schemas of their contract
   * entries, as each participant checks them, before anything of them reaches DTM: the JSON an HTTP
   * branch receives. A gRPC branch's payload is left to its participant (what that receives depends
   * on its proto loader's options), as is one given to `{ service, branch }` (no schema). Every
   * refusal at once: `DtmRemoteBranchError` (problem `payload`).
   */
  protected async assertContractPayloads(items: readonly { ref: RemoteBranch; target: BranchTarget; data: EncodedPayload; where: string }[]): Promise<void> {
    const problems = await Promise.all(
      items.map(async ({ ref, target, data, where }) => {
        if (!ref.schema || target.kind !== 'http') return undefined;
        const text = typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
        let problem: string | undefined;
        try {
          problem = await schemaProblem(ref.schema, parseAnswer(text));
        } catch (err) {
          problem = MESSAGES.remoteSchemaThrew(messageOf(err));
        }
        return problem === undefined ? undefined : { service: ref.service, branch: ref.branch, problem: 'payload' as const, message: MESSAGES.remotePayloadRefused(ref.service, ref.branch, `${this.transType} ${this.gid} ${where}`, problem) };
      }),
    );
    const refused = problems.filter((p) => p !== undefined);
    if (refused.length > 0) throw new DtmRemoteBranchError(refused);
  }

  /** Calls a branch of another service itself (TCC Try, XA action): a failure that says its target moved has its manifest refetched at the next use. */
  protected async invokeRemote(service: string, target: BranchTarget, payload: EncodedPayload | undefined, branchId: string, op: string, phase2Target?: string): Promise<BranchAnswer> {
    try {
      return await this.invokeBranch(target, payload, branchId, op, phase2Target);
    } catch (err) {
      this.runtime.remoteFailed(service, err);
      throw err;
    }
  }

  /** `payload` as this transaction's transport sends it to `target`. */
  protected encode(payload: Payload, target: BranchTarget): EncodedPayload {
    return this.transport.encode(payload, target);
  }

  /** Whether DTM accepted this object's prepare: the transaction DTM holds under the gid is this one, at least prepared. */
  protected get preparedInDtm(): boolean {
    return this.created;
  }

  /** Whether this object sent the transaction to DTM already (a prepare or submit that may have reached it). */
  protected get sentToDtm(): boolean {
    return this.sentBy !== undefined;
  }

  /** The keys of authenticated branch calls (`lynx.dtm.branch_auth_keys`), if set. */
  protected get auth(): BranchAuth | undefined {
    return this.runtime.config.branchAuthKeys;
  }

  /**
   * The request for prepare / submit / abort, with `parts` (steps, payloads, custom data ...); with
   * authenticated calls, the tokens of the calls DTM will make go with it in `branch_headers`.
   */
  protected request(parts: Omit<TransactionRequest, 'gid' | 'transType' | 'options'> = {}): TransactionRequest {
    const request = parts as TransactionRequest;
    request.gid = this.gid;
    request.transType = this.transType;
    request.options = this.observation?.headers ? { ...this.resolved, branchHeaders: this.branchHeaders } : this.resolved;
    const auth = this.auth;
    if (auth) {
      const entries: string[] = [];
      const signed = signedHeaders(request.options.branchHeaders);
      const headers = signed?.text;
      const issued = this.issued;
      this.signDtmCalls((op, branchId, target, payload) => {
        entries.push(`${authEntryKey(op, branchId)}=${auth.sign({ channel: 'dtm', gid: this.gid, transType: this.transType, branchId, op, target: targetPath(target), payload, headers, issued })}`);
      });
      // the names go to DTM even without a token of its calls: TCC confirm / cancel carry theirs in the branch id
      if (entries.length > 0 || signed) {
        request.options = { ...request.options, branchHeaders: withAuthHeaders(request.options.branchHeaders, entries.length > 0 ? [AUTH_HEADER, entries.join(',')] : undefined, signed) };
        // the tokens grow with the steps: the branch headers checked again with them, as DTM sends them
        this.checkTransaction(request.options);
      }
    }
    return request;
  }

  /** With authenticated calls: the forwarded headers this transaction's tokens sign (those DTM and the app send to its branches; for a nested TCC, the transaction's). */
  protected signedHeaders(): SignedHeaders | undefined {
    return signedHeaders(this.branchHeaders);
  }

  /**
   * With authenticated calls, has this transaction's tokens sign `issued` (Unix seconds) as their
   * issue time instead of now: a workflow run from DTM's record signs that of the tokens DTM stored,
   * which its record's creation time is checked against. Anything but Unix seconds leaves it as it is.
   */
  protected signAsIssued(issued: string | undefined): void {
    if (!this.runtime.config.branchAuthKeys || this.parent || issued === undefined || !/^\d{1,12}$/.test(issued)) return;
    this.issuedAt = issued;
    this.resolved = this.resolve();
  }

  /** With authenticated calls: when this transaction's tokens were issued ({@link AUTH_ISSUED_HEADER}, among its branch headers). */
  protected get issued(): string | undefined {
    return this.resolved.branchHeaders[AUTH_ISSUED_HEADER];
  }


  /** With authenticated calls: names every call DTM will make for `request` (saga steps, msg branches and back-check, workflow resume). */
  protected signDtmCalls(_sign: (op: string, branchId: string, target: string, payload: EncodedPayload | undefined) => void): void {}

  /**
   * The headers of a call the app makes itself: the transaction's, and with authenticated calls its
   * token. A sub-branch's Try (nested TCC), called from within the Try being served, carries the
   * trace context of the span active there (that Try's), so its span is that one's child.
   */
  protected callHeaders(target: BranchTarget, payload: EncodedPayload | undefined, branchId: string, op: string, phase2Target?: string): Record<string, string> {
    const auth = this.auth;
    const headers = this.parent ? this.nestedCallHeaders() : this.branchHeaders;
    if (!auth) return headers;
    const signed = signedHeaders(headers);
    const token = auth.sign({ channel: 'app', gid: this.gid, transType: this.transType, branchId, op, target: withPhase2(targetPath(target.value), phase2Target), payload, headers: signed?.text, issued: this.issued });
    return withAuthHeaders(headers, [AUTH_CALL_HEADER, token], signed);
  }

  /** A nested TCC's {@link branchHeaders}, with the trace context of the active span when an SDK made one (and trace context is passed on). */
  private nestedCallHeaders(): Record<string, string> {
    const headers = this.branchHeaders;
    if (this.runtime.config.passTraceContext === false) return headers;
    const trace = this.instrumentation.otel()?.activeTraceHeaders();
    return trace ? { ...headers, ...trace } : headers;
  }

  /** Calls a branch itself (TCC Try, XA action, msg back-check), within the branch timeout. */
  protected invokeBranch(target: BranchTarget, payload: EncodedPayload | undefined, branchId: string, op: string, phase2Target?: string): Promise<BranchAnswer> {
    return this.transport.callBranch({
      target,
      gid: this.gid,
      transType: this.transType,
      branchId,
      op,
      payload,
      headers: this.callHeaders(target, payload, branchId, op, phase2Target),
      timeoutSeconds: this.resolved.branchTimeout,
      phase2Target,
    });
  }

  /** Prepares the transaction in DTM; a refusal because DTM already holds another under the gid is {@link DtmGidInUseError}. */
  protected async prepareInDtm(request: TransactionRequest): Promise<void> {
    this.sentBy ??= 'prepare()';
    try {
      // with the transaction's span active, so that an HTTP / gRPC client instrumentation's span of the call is its child
      await this.withinObservation((r) => this.transport.prepare(r), request);
    } catch (err) {
      throw (await this.gidInUse(err, 'prepare')) ?? err;
    }
    this.created = true;
  }

  /**
   * `err` as {@link DtmGidInUseError} when it is DTM's refusal because of the transaction it stores
   * under the gid, and that one is not this one. DTM's MySQL store finds gids without case, so the
   * one it holds may be of another gid: asked (one query, on such a refusal only) to name it.
   */
  private async gidInUse(err: unknown, operation: string): Promise<DtmGidInUseError | undefined> {
    const refused = this.created || this.submitState === 'taken' ? undefined : refusedForStatus(err);
    if (!refused) return undefined;
    const { endpoint, protocol, status } = err as DtmFailureError;
    const held = await this.runtime.query(this.gid).catch(() => null);
    const detail = held && held.gid !== this.gid ? MESSAGES.gidHeldOtherCase(held.gid, held.transType) : refused.detail;
    return new DtmGidInUseError(operation, this.gid, refused.status, detail, { endpoint, protocol, status, cause: err });
  }

  /**
   * Submits `request`. With `waitResult`, DTM answers FAILURE (409 / ABORTED) whenever its first
   * round did not end in success, also when the transaction is merely still running, and ONGOING
   * (425 / FAILED_PRECONDITION) when a branch of that round answered ONGOING (a TCC's Confirm, say):
   * the stored status decides. `failed` → {@link DtmFailureError} with the rollback reason; still running →
   * {@link DtmOngoingError}; with `tolerateUnfinished` (the caller waits for the outcome itself,
   * a rollback being one) neither is thrown: the caller's wait reads the status.
   * DTM's refusal because it already holds another transaction under the gid (this object did not
   * prepare it) is {@link DtmGidInUseError}, never that transaction's status.
   *
   * DTM's refusal of a submit because of the status it stores ("current status 'succeed', cannot
   * sumbmit") is not a refusal of this transaction when it is this transaction DTM went on with:
   * one this object prepared (TCC, XA, a prepared message, which DTM's own back-check may have
   * delivered), one whose earlier submit from this object DTM took (`submitAndWait()` after
   * `submit()`), or a saga or message DTM holds with exactly these steps and payloads (on a SQL
   * store, the branches made of them) after the
   * transport sent the submit a second time (the first one's connection was reset before the
   * answer, after DTM acted on it), or after an earlier submit of this object that may have
   * reached DTM (submitAndWait's submit again, DTM having held no record for a while). Then the stored status decides as above: `submitted` or
   * `succeed` (and for such a saga or message `aborting`: its submit took, a branch failed) is
   * submitted, `failed` is {@link DtmFailureError} with the rollback reason. A transaction this
   * object prepared that DTM holds `aborting` was not submitted (DTM rolls it back): the refusal is
   * thrown. With `tolerateUnfinished`, `failed` and such an `aborting` are left to the caller's wait (the rollback is the outcome).
   */
  protected async submitRequest(request: TransactionRequest, tolerateUnfinished: boolean): Promise<void> {
    this.sentBy ??= 'submit()';
    const earlier = this.submitState !== 'none';
    try {
      await this.withinObservation((r) => this.transport.submit(r), request);
      this.submitState = 'taken';
    } catch (err) {
      if (this.submitState === 'none' && (mayHaveReachedDtm(err) || (request.options.waitResult && isFirstRoundAnswer(err)))) this.submitState = 'maybe';
      const own = await this.ownSubmitRefused(err, request, tolerateUnfinished, earlier);
      if (!own) {
        const inUse = await this.gidInUse(err, 'submit');
        if (inUse) throw inUse;
        if (!(request.options.waitResult && isFirstRoundAnswer(err))) {
          if (request.options.waitResult && err instanceof DtmServerError && !tolerateUnfinished && (await this.tookUnfinished(err))) return;
          throw err;
        }
      }
      this.submitState = 'taken';
      const answer = err as DtmFailureError | DtmOngoingError;
      const reason = answer instanceof DtmFailureError ? answer.reason : answer.message;
      let record: TransactionRecord | null | undefined = own;
      if (!record) {
        try {
          record = await this.runtime.query(this.gid);
        } catch (queryError) {
          // DTM answered the submit (it holds the transaction, its first round ran): not knowing its status is not "never got it"
          if (tolerateUnfinished) return; // the caller's wait asks again
          this.unfinishedStatus = 'unknown';
          throw new DtmOutcomeUnknownError(MESSAGES.firstRoundStatusUnknown(this.gid, reason, (queryError as Error).message), this.gid, 'unknown', { cause: err });
        }
      }
      if (record?.status === 'succeed') return;
      if (record?.status === 'failed') {
        if (tolerateUnfinished) return; // the caller waits for the outcome, and a rollback is one (its wait reads it, with the reason)
        const raw = record.rollbackReason ?? (answer instanceof DtmFailureError ? answer.raw : answer.message);
        throw (this.rolledBack = new DtmFailureError(readFailureReason(raw).message, { raw, gid: this.gid, endpoint: answer.endpoint, protocol: answer.protocol, status: answer.status, cause: err }));
      }
      if (own && !request.options.waitResult) return; // submitted (or rolling back, which the wait or a query shows): DTM took it
      if (tolerateUnfinished) return;
      this.unfinishedStatus = record?.status ?? 'unknown';
      const ongoing = new DtmOngoingError(MESSAGES.waitResultNotFinal(this.gid, record?.status ?? 'unknown', reason), { gid: this.gid, cause: err });
      // DTM holds it and drives it on (its cron retries the unfinished round): reported submitted
      if (record?.status === 'submitted' || record?.status === 'aborting') this.goneOn = ongoing;
      throw ongoing;
    }
  }

  /**
   * With waitResult DTM passes on the error of a branch of its first round (HTTP 500 / gRPC UNKNOWN:
   * a saga step's or a message branch's, a Confirm's or an XA commit's), after it stored the
   * submit. `err` is such an answer: when DTM's record says it took the submit, true if it succeeded
   * meanwhile, else `DtmOutcomeUnknownError` saying DTM took it (reported `submitted` when DTM holds
   * it so); false when the record says nothing of the kind (still prepared, none, or no answer).
   */
  private async tookUnfinished(err: DtmServerError): Promise<boolean> {
    const taken = await this.recordIfKnown();
    if (!taken || taken.status === 'prepared' || taken.status === 'failed') return false;
    if (taken.status === 'succeed') return true;
    this.submitState = 'taken';
    this.unfinishedStatus = taken.status;
    const unfinished = new DtmOutcomeUnknownError(MESSAGES.firstRoundUnfinished(this.gid, taken.status, err.message), this.gid, taken.status, { cause: err });
    // DTM took the submit and drives it on (its cron retries the branch): reported submitted
    if (taken.status === 'submitted' || taken.status === 'aborting') this.goneOn = unfinished;
    throw unfinished;
  }

  /**
   * When `err` is DTM's refusal of `request`'s submit because of the status it stores, and what it
   * stores is this transaction gone on (see {@link submitRequest}): DTM's record of it. A query that
   * fails then is {@link DtmOutcomeUnknownError}: DTM holds the transaction, possibly submitted.
   * `sentBefore`: an earlier submit of this object may have reached DTM.
   */
  private async ownSubmitRefused(err: unknown, request: TransactionRequest, tolerateUnfinished: boolean, sentBefore: boolean): Promise<TransactionRecord | undefined> {
    const refused = refusedForStatus(err);
    if (!refused || refused.status === 'prepared') return undefined;
    // sent again by the transport after a reset, or a submit again of one that may have reached DTM (submitAndWait's, after DTM held no record)
    const resent = wasResent(err) || sentBefore;
    if (!this.created && this.submitState !== 'taken' && !resent) return undefined;
    let record: TransactionRecord | null;
    try {
      record = await this.runtime.query(this.gid);
    } catch (queryError) {
      throw new DtmOutcomeUnknownError(MESSAGES.submitOutcomeUnknown(this.gid, refused.status, (queryError as Error).message), this.gid, refused.status, { cause: err });
    }
    if (!record || record.status === 'prepared') return undefined;
    // a transaction this object prepared that DTM is rolling back (its timeoutToFail passed, or it was aborted): no submit of it
    // took, which is thrown, unless the caller waits for the outcome (the rollback, which its wait reads)
    if (this.created) return record.status === 'aborting' && !tolerateUnfinished ? undefined : record;
    // a saga or message whose earlier submit DTM took (a submitAndWait() after its submit()): DTM went on with it
    if (this.submitState === 'taken' || sameSteps(record, request)) return record;
    return undefined;
  }
}

/**
 * Whether `err` is DTM's answer to a submit with waitResult that its first round did not end in
 * success: FAILURE (409 / ABORTED), or ONGOING (425 / FAILED_PRECONDITION: a branch answered
 * ONGOING). Not the module's own {@link DtmOutcomeUnknownError}, which is a DtmOngoingError too.
 */
function isFirstRoundAnswer(err: unknown): boolean {
  return err instanceof DtmFailureError || (err instanceof DtmOngoingError && !(err instanceof DtmOutcomeUnknownError));
}

/**
 * Whether DTM's `record` holds the steps and payloads of `request` (a saga or message submitted
 * whole): the transaction it sent, told by the branches DTM made of them ({@link sameBranches}),
 * which every store answers on both protocols and which are what DTM runs and retries. Never by
 * the steps alone: DTM's SQL stores answer none, over gRPC its stored payloads read otherwise than
 * sent, and two submits racing on one gid leave a record with one's steps and the other's branches.
 */
export function sameSteps(record: TransactionRecord, request: TransactionRequest): boolean {
  return record.transType === request.transType && sameBranches(record, request.steps ?? [], request.payloads ?? []);
}

/**
 * Whether the branches of `record` are those DTM makes of `steps` and `payloads` (dtmsvr
 * trans_type_saga.go / trans_type_msg.go `GenBranches`): per step `NN` (from 01), a saga's
 * `compensate` and `action`, a message's `action` (`NN-MM`, one per subscriber, for a topic, whose
 * URLs are the subscribers'), each with the step's target and payload bytes.
 */
function sameBranches(record: TransactionRecord, steps: readonly Record<string, string>[], payloads: readonly EncodedPayload[]): boolean {
  const ops = record.transType === 'saga' ? ['compensate', 'action'] : ['action'];
  const seen = new Set<string>();
  for (const branch of record.branches) {
    const id = /^(\d{2,})(-\d{2,})?$/.exec(branch.branchId); // %02d: 100 and on have three digits
    const index = id ? Number(id[1]) - 1 : -1;
    const step = steps[index];
    if (step === undefined || !ops.includes(branch.op)) return false;
    const target = step[branch.op] ?? '';
    const topic = target.startsWith('topic://');
    // a topic's branches are its subscribers (their URLs); any other step is one branch of its own target
    if (!topic && (id![2] !== undefined || (branch.url ?? '') !== target)) return false;
    const payload = payloads[index] ?? '';
    if (!branch.data.equals(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload))) return false;
    const key = `${index} ${branch.op}`;
    if (seen.has(key) && !topic) return false;
    seen.add(key);
  }
  return seen.size === steps.length * ops.length;
}

/** Printable ASCII and tab: what a header value keeps from the AP through DTM to the branch, on either transport. */
const SIGNABLE_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * With authenticated calls, a forwarded header's value is signed, so it must reach the branch as it
 * was signed (else every call DTM makes would be refused): refused here, before anything is sent,
 * a value that is not ASCII (DTM sends its UTF-8 bytes, which Node reads back as latin1), and over
 * gRPC `user-agent` (gRPC clients replace it) and a `-bin` name (its value arrives as bytes).
 */
function checkSignedHeaderValues(headers: Record<string, string>, gid: string, protocol: DtmProtocol): void {
  for (const name in headers) {
    const lower = name.toLowerCase();
    if (!isSignedHeader(lower)) continue;
    if (!SIGNABLE_VALUE.test(headers[name])) throw new DtmUsageError(MESSAGES.signedHeaderNotAscii(name), { gid });
    if (protocol === 'grpc' && (lower === 'user-agent' || lower.endsWith('-bin'))) throw new DtmUsageError(MESSAGES.signedHeaderNotGrpc(name), { gid });
  }
}

/** `headers` with a token header (`[name, value]`, if any) and, when the tokens sign forwarded headers, their names in `dtm-auth-headers`. */
function withAuthHeaders(headers: Record<string, string> | undefined, token: [string, string] | undefined, signed: SignedHeaders | undefined): Record<string, string> {
  const merged = { ...headers };
  if (token) merged[token[0]] = token[1];
  if (signed) merged[AUTH_HEADERS_HEADER] = signed.names;
  return merged;
}

/**
 * `base` with `later` over it, header names compared case-insensitively (DTM would store and send
 * both spellings, and which one a branch reads first is not defined): a name of `later` replaces
 * every spelling of it in `base`. `later` (given by the app) may not name one header twice, nor a
 * framing or connection header (`DtmUsageError`).
 */
function overrideHeaders(base: Record<string, string>, later: Record<string, string>, gid?: string): Record<string, string> {
  if (typeof later !== 'object' || later === null || Array.isArray(later)) throw new DtmUsageError(MESSAGES.notAnObject('branchHeaders', later), { gid });
  const names = new Map<string, string>();
  for (const name in later) {
    if (typeof later[name] !== 'string') throw new DtmUsageError(MESSAGES.branchHeaderNotString(name, later[name]), { gid });
    const lower = name.toLowerCase();
    const twice = names.get(lower);
    if (twice !== undefined) throw new DtmUsageError(MESSAGES.branchHeaderTwice([twice, name]), { gid });
    if (isForbiddenBranchHeader(lower)) throw new DtmUsageError(MESSAGES.branchHeaderForbidden(name), { gid });
    names.set(lower, name);
  }
  const merged: Record<string, string> = {};
  for (const name in base) if (!names.has(name.toLowerCase())) merged[name] = base[name];
  return Object.assign(merged, later);
}
