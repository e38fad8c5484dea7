import { BranchBarrier } from '../barrier/branch-barrier.js';
import type { BarrierDatabase } from '../barrier/barrier.types.js';
import { parseTarget, type BranchTarget } from '../transport/branch-target.js';
import type { FinalResult, Payload, TransactionOptions, WaitOptions } from '../transport/dtm.types.js';
import type { EncodedPayload, TransactionRequest } from '../transport/dtm-transport.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmOutcomeUnknownError } from '../errors/dtm-outcome-unknown.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { leftPrepared, stillPreparedError } from '../transport/dtm-transient.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DTM_DEFAULT_TIMEOUT_TO_FAIL, DTM_SECONDS_MAX } from '../config/dtm-config.keys.js';
import { StepTransaction } from './step-transaction.js';
import { isRemoteBranch, type RemoteBranch } from '../contracts/branch-contract.js';
import { assertWholeNumber, sameSteps } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';
import type { DtmTransactionOutcome } from '../observability/dtm-events.js';
import { messageOf } from '../errors/text-of.js';

/** Identity of the local transaction of a two-phase message (what the msg barrier records). */
export interface MsgLocalTransaction {
  gid: string;
  transType: 'msg';
  /** Always `00`. */
  branchId: string;
  /** Always `msg`. */
  op: string;
  /**
   * The module's barrier table (`lynx.dtm.barrier_table`), where its `@MsgQueryPrepared` back-check
   * reads: `BranchBarrier.from(local)` writes the message's row there unless given another `table`.
   */
  barrierTable: string;
}

/**
 * A two-phase message: branches DTM calls (at least once) after the local transaction committed.
 * Made by `DtmClient.newMsg(gid)`.
 */
export class Msg extends StepTransaction {
  private delaySeconds = 0;
  private concurrent = false;
  private queryPrepared?: BranchTarget;
  /** Set once a prepare was sent: DTM keeps the steps, delay and concurrency of that call. */
  private prepareSent = false;
  /** Set once {@link doAndSubmit} ran (started) its local transaction: a second one would run it again. */
  private businessRan = false;
  /** Set once a submit of this object was started: DTM refuses a prepare of a message it holds submitted or finished. */
  private submitStarted = false;
  /** Set when DTM took this object's prepare for another transaction it held prepared under the gid ({@link assertPreparedOwn}): every submit is refused with it. */
  private heldByAnother?: DtmGidInUseError;
  /** Set while {@link doAndSubmit} submits, its local transaction committed; `businessError`: the local transaction's own error (its back-check said it committed), thrown instead of the submit's. */
  private committedLocal?: { businessError: unknown };
  /** Set by {@link doAndSubmitDb}: the local transaction is the module's own, so an error it threw while its back-check found it committed is the lost answer of its COMMIT. */
  private outboxDb = false;

  /** @internal use `DtmClient.newMsg` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'msg', options);
  }

  /**
   * Adds a branch: DTM sends `payload` to `action` (a URL, a gRPC target, or the name of this app's
   * `@MsgBranch`). Before {@link prepare} only: after it, refused with `DtmUsageError` (DTM builds
   * the branches from the prepare call).
   */
  add(action: string, payload?: Payload): this;
  /** Adds a branch of another service by name: an entry of its contract (`Stock.notify`, whose payload type `payload` must have) or `{ service, branch }`. */
  add<P>(branch: RemoteBranch<'msg', P>, payload: NoInfer<P>): this;
  add(action: string | RemoteBranch, payload?: Payload): this {
    this.assertNotPrepared('add()');
    if (isRemoteBranch(action)) {
      this.addRemote(action, 'msg', payload);
      return this;
    }
    const target = this.target(action, 'msg', 'action');
    if (target.kind === 'topic' && this.auth) throw new DtmUsageError(MESSAGES.topicWithAuth(this.gid, target.value), { gid: this.gid });
    // a payload refused adds no step
    this.pushPayload(this.encode(payload, target));
    this.steps.push({ action: target.value });
    return this;
  }

  /**
   * Adds a branch per subscriber of `topic` (subscribed on the DTM server). DTM sends every
   * subscriber the same bytes: an object payload goes as its JSON text, also to gRPC subscribers;
   * give those the encoded message (a `Uint8Array`). Before {@link prepare} only, as {@link add}.
   */
  addTopic(topic: string, payload?: Payload): this {
    this.assertNotPrepared('addTopic()');
    if (typeof topic !== 'string' || topic === '') throw new DtmUsageError(MESSAGES.badTopic(topic), { gid: this.gid });
    return this.add(`topic://${topic}`, payload);
  }

  /** DTM calls the branches no earlier than `seconds` (a whole number) after the message was created. Before {@link prepare} only. */
  setDelay(seconds: number): this {
    this.assertNotPrepared('setDelay()');
    assertWholeNumber('setDelay(seconds)', seconds, 0, DTM_SECONDS_MAX, 'seconds', 'the range of DTM\'s other durations', this.gid);
    this.delaySeconds = seconds;
    return this;
  }

  /** Lets DTM call the branches in parallel (HTTP only: DTM's gRPC API has no such field). Before {@link prepare} only. */
  enableConcurrent(): this {
    this.assertNotPrepared('enableConcurrent()');
    if (this.protocol === 'grpc') throw new DtmUsageError(MESSAGES.msgConcurrentOverGrpc(this.gid), { gid: this.gid });
    this.concurrent = true;
    return this;
  }

  /**
   * Registers the message as prepared, with the target DTM calls to ask whether the local
   * transaction committed (if the message is neither submitted nor aborted before its timeout): a
   * URL, a gRPC target, or the name of this app's `@MsgQueryPrepared`. DTM keeps the steps, delay
   * and concurrency of this call: add them all before it (later ones are refused). Again on the same
   * object: taken with the same back-check; refused (`DtmUsageError`, nothing sent) with another
   * one (DTM keeps the first) or after a submit. Observed (hooks, OpenTelemetry), the message ends
   * at its submit; one never submitted ends `prepared` once its `timeoutToFail` passed (DTM's
   * back-check decides it then), or when the app closes.
   */
  async prepare(queryPrepared: string): Promise<void> {
    await this.prepareMessage(queryPrepared);
    this.parkObservation(this.options.timeoutToFail || DTM_DEFAULT_TIMEOUT_TO_FAIL);
  }

  /** {@link prepare}, without parking the observation ({@link doAndSubmit} ends it on every path). */
  private async prepareMessage(queryPrepared: string): Promise<void> {
    if (this.submitStarted) throw new DtmUsageError(MESSAGES.msgPrepareAfterSubmit(this.gid), { gid: this.gid });
    const check = this.target(queryPrepared, 'msg-query-prepared', 'back-check', true);
    // DTM v1.19 takes a prepare of a message it holds prepared without storing anything of it: the first back-check stays
    if (this.prepareSent && this.queryPrepared && check.value !== this.queryPrepared.value) throw new DtmUsageError(MESSAGES.msgPrepareOtherCheck(this.gid, check.value, this.queryPrepared.value), { gid: this.gid });
    this.queryPrepared = check;
    this.unparkObservation(); // a prepare again (refused ones above leave it parked): this one ends or parks it
    this.observeStart();
    try {
      if (this.remoteSteps) await this.resolveRemote();
      this.prepareSent = true; // a prepare that may have reached DTM fixed the steps too
      const request = this.submission();
      await this.prepareInDtm(request);
      await this.assertPreparedOwn(request);
    } catch (err) {
      this.observeEnd('error', err);
      throw err;
    }
  }

  /**
   * Submits the message; DTM then delivers it. After this object's {@link prepare}, a submit that
   * does not get through (DTM unreachable, no answer, a 5xx; over gRPC UNKNOWN or INTERNAL; any other
   * answer than DTM's FAILURE or ONGOING, a gateway's 4xx say) is decided by DTM's record, as for TCC
   * and XA (one query, on that error path only): `submitted` or `succeed`, the submit took and this
   * resolves (with `waitResult`, `submitted` is `DtmOutcomeUnknownError` `submitted`); `prepared`,
   * `DtmOutcomeUnknownError` `prepared` (DTM's back-check delivers it after `timeoutToFail`, or submit
   * again); no record (DTM lost it, or the query reached another DTM), `absent`; DTM answering no query, `unknown`. With `waitResult`, a branch's error DTM passes on from
   * its first round is `lastStatus` `submitted` (DTM took it and retries the branch). Wait with
   * `waitForFinal(gid)`; never run the local transaction again, nor send the message again under a new gid.
   */
  override async submit(): Promise<void> {
    if (this.heldByAnother) throw this.heldByAnother;
    this.submitStarted = true;
    this.unparkObservation(); // the submit ends it
    await super.submit(); // its error restated by submitError()
  }

  /**
   * {@link StepTransaction.submitAndWait}; after this object's {@link prepare}, a submit that did not
   * get through, also one never sent (DTM refusing connections for a moment), is waited out as a
   * TCC's: the wait sends it again while DTM holds the message prepared (at once after one never
   * sent), until `wait.timeout`, then `DtmOutcomeUnknownError` with what DTM holds (`prepared`, also
   * when DTM answered no query and no submit reached it). An answer to the submit that is not DTM's
   * decision (a gateway's 4xx, say: see {@link submit}) is `DtmOutcomeUnknownError` `prepared` at
   * once, not an error that reads as "not sent".
   */
  override async submitAndWait(wait?: WaitOptions): Promise<FinalResult> {
    if (this.heldByAnother) throw this.heldByAnother;
    this.submitStarted = true;
    this.unparkObservation(); // the submit ends it
    return super.submitAndWait(wait); // its error restated by submitError()
  }

  /**
   * DTM v1.19 takes a prepare of a gid it holds prepared whatever it holds there (`svcPrepare`):
   * another message with other branches (prepared at the same time, or left prepared under a gid
   * used again), a TCC or XA. Its submit would then deliver that one's branches, and a
   * `doAndSubmit()` would run its local transaction for a message DTM never delivers. So after the
   * prepare, DTM's record must be of this gid (DTM's MySQL store finds gids without case) and hold
   * this message's branches ({@link sameSteps}), else
   * `DtmGidInUseError` before anything else runs (and every later submit of this object is refused
   * with it). A query that fails leaves the prepare as DTM answered it.
   */
  private async assertPreparedOwn(request: TransactionRequest): Promise<void> {
    const record = await this.recordIfKnown();
    // DTM's MySQL store finds a gid without case: a record of another gid is another message, whatever its steps
    const otherGid = record ? record.gid !== this.gid : false;
    if (!record || (!otherGid && sameSteps(record, request))) return;
    const detail = otherGid ? MESSAGES.gidHeldOtherCase(record.gid, record.transType) : MESSAGES.msgPreparedOverAnother(record.transType);
    this.heldByAnother = new DtmGidInUseError('prepare', this.gid, record.status, detail, { protocol: this.protocol });
    throw this.heldByAnother;
  }

  /** A submit after {@link doAndSubmit}'s local transaction threw (its back-check said it committed) ends `submitted` with that error, the one the caller gets. */
  protected override observeEnd(outcome: DtmTransactionOutcome, error?: unknown): void {
    super.observeEnd(outcome, error === undefined && outcome === 'submitted' ? this.committedLocal?.businessError : error);
  }

  /**
   * {@link submit}'s `err` (also {@link doAndSubmit}'s submit), after this object's {@link prepare}
   * or once the local transaction committed, when it leaves the submit undecided ({@link leftPrepared}:
   * no answer in time, a broken connection, a 5xx, an answer not DTM's): DTM's record decides, as for
   * TCC / XA ({@link statusAfterUndecidedSubmit}: one query, on that error path only). `submitted` or
   * `succeed`: the submit took, it resolves (with waitResult, `submitted` is `DtmOutcomeUnknownError`
   * `submitted`: DTM's first round is not known to have ended); `prepared` (or a submit that never
   * reached DTM, which then answers no query): `DtmOutcomeUnknownError` `prepared`, saying what comes
   * next; `failed` (its back-check found the local transaction rolled back): `DtmFailureError` with
   * DTM's reason; no record although DTM took the prepare (lost, or the query reached another DTM):
   * `absent`, saying so; no answer after a submit that may have reached DTM: `unknown`. Any other error as
   * {@link submitError} restates it.
   */
  protected override async submitFailed(err: unknown): Promise<void> {
    const committed = this.committedLocal;
    // a local transaction's own error (its back-check said it committed) is what the caller gets, whatever the submit did; the outbox's lost COMMIT answer only once the submit took
    const asks = committed ? committed.businessError === undefined || this.outboxDb : this.preparedInDtm;
    if (!asks || !leftPrepared(err)) throw this.submitError(err);
    const cause = (err as Error).message;
    const local = committed !== undefined;
    const status = await this.statusAfterUndecidedSubmit(err, !this.options.waitResult, (queryError) => MESSAGES.msgSubmitStatusUnknown(this.gid, cause, queryError, local), local);
    if (status === 'submitted' || status === 'succeed') return;
    const timeoutToFail = this.options.timeoutToFail || DTM_DEFAULT_TIMEOUT_TO_FAIL;
    throw new DtmOutcomeUnknownError(MESSAGES.msgSubmitNotTaken(this.gid, cause, status === 'prepared', timeoutToFail, local), this.gid, 'prepared', { cause: err });
  }

  /**
   * `err` of a submit as the caller gets it (and `transaction.end` carries it): after {@link doAndSubmit}'s
   * local transaction committed, {@link committedSubmitError}; after this object's {@link prepare},
   * {@link stillPreparedError}'s `DtmOutcomeUnknownError` (`prepared`: {@link submitAndWait}'s for an
   * answer not DTM's, a gateway's 4xx, which it does not wait out); else `err`. Restating an error that says DTM took the submit and goes on keeps
   * it reported `submitted`.
   */
  protected override submitError(err: unknown): unknown {
    const thrown = this.committedLocal ? this.committedSubmitError(err, this.committedLocal.businessError) : this.preparedInDtm ? stillPreparedError(this.gid, err) : err;
    if (thrown !== err && err === this.goneOn) this.goneOn = thrown;
    return thrown;
  }

  /**
   * `err` of {@link doAndSubmit}'s submit, its local transaction committed, unless it left the submit
   * undecided (then {@link submitFailed} asked DTM): the local transaction's own error when it threw
   * (`businessError`: its back-check said it committed; {@link doAndSubmitDb}'s restated as its
   * COMMIT's lost answer); with waitResult, a branch's FAILURE or ONGOING in DTM's first round is
   * `DtmOutcomeUnknownError` with the status DTM holds: DTM took the submit and retries the branch.
   */
  private committedSubmitError(err: unknown, businessError: unknown): unknown {
    if (businessError !== undefined) return businessError;
    if (err instanceof DtmOngoingError && !(err instanceof DtmOutcomeUnknownError)) {
      const status = this.unfinishedStatus ?? 'unknown';
      const answer = err.cause instanceof Error ? err.cause.message : err.message; // DTM's own answer, not the advice around it
      return new DtmOutcomeUnknownError(MESSAGES.msgFirstRoundUnfinished(this.gid, status, answer), this.gid, status, { cause: err });
    }
    return err;
  }

  /** Each branch (`01`, `02`, ...) and the back-check DTM makes (branch `00`, op `msg`, no body). */
  protected override signDtmCalls(sign: (op: string, branchId: string, target: string, payload: EncodedPayload | undefined) => void): void {
    this.steps.forEach((step, i) => {
      if (step.action) sign('action', String(i + 1).padStart(2, '0'), step.action, this.payloads[i]);
    });
    if (this.queryPrepared?.value) sign('msg', '00', this.queryPrepared.value, undefined);
  }

  protected submission(): TransactionRequest {
    // custom_data goes with prepare too: DTM stores the steps and custom data of the prepare call
    return this.request({
      customData: this.delaySeconds > 0 ? JSON.stringify({ delay: this.delaySeconds }) : undefined,
      concurrent: this.concurrent,
      steps: this.steps,
      payloads: this.payloads,
      queryPrepared: this.queryPrepared?.value,
    });
  }

  /**
   * The two-phase message with DTM's exact decision rules (Go SDK `DoAndSubmit`): prepare; run
   * `business` (the local transaction); if it succeeded, submit. If it threw {@link DtmFailureError},
   * abort. If it threw anything else, ask `queryPrepared` whether the local transaction committed
   * anyway: FAILURE → abort; success → submit; no answer → leave the message prepared for DTM's own
   * back-check. Throws the business error if there was one, else the submit / back-check error.
   *
   * Once `business` committed, a submit DTM refuses because it already delivered the message (its
   * own back-check ran while `business` outlasted the message's timeout: status `submitted` or
   * `succeed`) is a success; only a message DTM failed is a {@link DtmFailureError}. A submit that
   * does not get through (DTM unreachable, no answer, a 5xx; over gRPC UNKNOWN or INTERNAL; a gateway's 4xx, any answer but DTM's FAILURE or ONGOING) is decided by DTM's record, as in {@link submit}:
   * taken, this resolves; `prepared`, `DtmOutcomeUnknownError` `prepared` (its back-check delivers it);
   * no answer, `unknown`; never the bare `DtmUnavailableError`. With `waitResult`, a branch answering FAILURE, ONGOING or an error DTM
   * passes on in its first round is `DtmOutcomeUnknownError` too, with `lastStatus` `submitted`: DTM retries
   * the branch. Do not run the business again; wait with `waitForFinal(gid)`. A second `doAndSubmit()`
   * on an object whose local transaction ran already is refused (`DtmUsageError`, nothing sent or run).
   */
  async doAndSubmit<T>(queryPrepared: string, business: (local: MsgLocalTransaction) => Promise<T>): Promise<T> {
    if (typeof business !== 'function') throw new DtmUsageError(MESSAGES.notAFunction(`the local transaction of msg ${this.gid}`, business), { gid: this.gid });
    // DTM takes a prepare of a message it holds prepared (one left so by an earlier run): the business would run, and may commit, twice
    if (this.businessRan) throw new DtmUsageError(MESSAGES.msgBusinessAgain(this.gid), { gid: this.gid });
    await this.prepareMessage(queryPrepared);
    this.businessRan = true;
    const local: MsgLocalTransaction = { gid: this.gid, transType: 'msg', branchId: '00', op: 'msg', barrierTable: this.runtime.config.barrierTable };
    let result: T | undefined;
    let businessError: unknown;
    let checkError: unknown;
    try {
      result = await this.withinObservation(business, local);
    } catch (err) {
      businessError = err;
    }
    if (businessError !== undefined && !(businessError instanceof DtmFailureError)) {
      checkError = await this.askQueryPrepared(local).then(
        () => undefined,
        (err: unknown) => err,
      );
    }
    if (businessError instanceof DtmFailureError || checkError instanceof DtmFailureError) {
      const cause = businessError ?? checkError;
      await this.withinObservation((r) => this.transport.abort(r), this.submission()).catch((abortError: unknown) => this.abortFailed(abortError, cause));
      this.observeEnd('aborted', cause);
    } else if (checkError === undefined) {
      // the outbox's own transaction threw, and committed: its COMMIT's answer was lost, which the bare error does not say
      if (businessError !== undefined && this.outboxDb) businessError = new DtmOutcomeUnknownError(MESSAGES.outboxCommitAnswerLost(this.gid, messageOf(businessError)), this.gid, 'submitted', { cause: businessError });
      this.submitStarted = true;
      this.committedLocal = { businessError };
      try {
        await super.submit(); // its error restated by submitError(): the local transaction committed
      } finally {
        this.committedLocal = undefined; // a later submit() of this object is restated as any other
      }
    } else {
      this.observeEnd('prepared', businessError);
    }
    if (businessError !== undefined) throw businessError;
    if (checkError !== undefined) throw checkError;
    return result as T;
  }

  /**
   * The transactional outbox: {@link doAndSubmit} with the local transaction opened on `db` and
   * guarded by the message barrier (branch `00`, op `msg`, barrier `01`), whose row commits with your
   * business. A `@MsgQueryPrepared` back-check on the same database (with `{ barrier }`) then knows
   * for sure whether the business committed (this app's `@MsgQueryPrepared` without a barrier on that
   * kind of database is refused, `DtmUsageError`, nothing sent). Throws `DtmDuplicatedError` (and sends nothing) if the
   * back-check ran first. A local transaction that threw and yet committed (its COMMIT's answer lost:
   * a connection cut while it ran; the back-check finds its row) is submitted and throws
   * `DtmOutcomeUnknownError` (`submitted`, the database's error as its cause): do not run it again.
   */
  async doAndSubmitDb<H, T>(queryPrepared: string, db: BarrierDatabase<H>, business: (handle: H) => Promise<T>): Promise<T> {
    // checked before the prepare: a Redis connection or a bare pool would fail only inside the local transaction, after DTM holds the message
    if (!isBarrierDatabase(db)) throw new DtmUsageError(MESSAGES.barrierDbMissing(db), { gid: this.gid });
    if (typeof business !== 'function') throw new DtmUsageError(MESSAGES.notAFunction(`the local transaction of msg ${this.gid}`, business), { gid: this.gid });
    this.assertOutboxCheck(queryPrepared, db);
    this.outboxDb = true;
    return this.doAndSubmit(queryPrepared, async (local) => {
      const outcome = await BranchBarrier.from(local, { table: this.runtime.config.barrierTable }).outboxWithDb(db, business);
      return (outcome as { result: T }).result; // a msg barrier call either runs the business or throws DtmDuplicatedError
    });
  }

  /**
   * Refuses (before anything is sent) an outbox whose back-check is this app's `@MsgQueryPrepared`
   * without a barrier on `db`'s kind of database: it cannot see the barrier row the local transaction
   * commits, so it answers for a local transaction that failed as if it committed (a handler that
   * returns: the message is delivered) or the other way round (Redis: never delivered after a crash).
   */
  private assertOutboxCheck(queryPrepared: string, db: BarrierDatabase<unknown>): void {
    let parsed: ReturnType<typeof parseTarget>;
    try {
      parsed = parseTarget(queryPrepared, this.gid);
    } catch {
      return; // prepare() refuses it, saying why
    }
    if (parsed.kind !== 'name') return; // a URL or gRPC target: not this app's to tell
    const check = this.runtime.branchBarrier?.('msg-query-prepared', parsed.name, this.protocol);
    if (check && check.store !== db.dialect) throw new DtmUsageError(MESSAGES.outboxCheckWithoutBarrier(this.gid, queryPrepared, check, db.dialect), { gid: this.gid });
  }

  private assertNotPrepared(what: string): void {
    if (this.prepareSent) throw new DtmUsageError(MESSAGES.msgChangedAfterPrepare(this.gid, what), { gid: this.gid });
  }

  private async askQueryPrepared(local: MsgLocalTransaction): Promise<void> {
    // doAndSubmit's prepare() set it, never empty (an empty back-check is refused there)
    await this.withinObservation((target) => this.invokeBranch(target, undefined, local.branchId, local.op), this.queryPrepared!);
  }
}

/** Whether `db` can open the outbox's local transaction: a SQL barrier database (`transaction()` and a dialect the barrier speaks). */
function isBarrierDatabase(db: unknown): db is BarrierDatabase {
  const candidate = db as Partial<BarrierDatabase> | null;
  return typeof candidate === 'object' && candidate !== null && typeof candidate.transaction === 'function' && (candidate.dialect === 'postgres' || candidate.dialect === 'mysql');
}
