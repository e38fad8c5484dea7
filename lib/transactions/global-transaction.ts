import { randomUUID } from 'node:crypto';
import type { FinalResult, TransactionOptions, TransactionType, WaitOptions } from '../transport/dtm.types.js';
import { isTransientDtmError, isUndecidedSubmit, stillPreparedError } from '../transport/dtm-transient.js';
import { cutToStore } from '../transport/dtm-limits.js';
import { restatedContext } from '../errors/dtm-error.js';
import { MESSAGES } from '../dtm.messages.js';
import { shownBranchId } from '../auth/branch-auth.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { recordedBranchFailure } from '../diagnostics/branch-failures.js';
import { assertWaitOptions } from './wait-options.js';
import { NESTED_FAILURE, Transaction, type NestedFailure, type ParentBranch } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';
import { textOf } from '../errors/text-of.js';

/** The final outcome of a TCC or XA transaction run with `DtmClient.tccGlobalTransactionAndWait` / `xaGlobalTransactionAndWait`; `result` is what the body returned (absent when a branch's FAILURE out of it rolled it back). */
export interface GlobalTransactionOutcome<T> extends FinalResult {
  result?: T;
}

/**
 * The text DTM gets as the rollback reason for an error {@link withOwnHandlerFailure} made: the
 * branch call's own message, without the handler's error (kept in this process, as the branch's
 * answer to DTM was kept without it).
 */
const REASON_FOR_DTM = new WeakMap<object, string>();

/** The rollback reason DTM gets for `err`. */
function reasonForDtm(err: unknown): string {
  return err instanceof Error ? (REASON_FOR_DTM.get(err) ?? err.message) : textOf(err);
}

/**
 * A TCC Try / XA action answered with an error (DtmServerError) by a handler of this process that
 * threw: the same error, its message naming the handler and what it threw (recorded by the branch's
 * exception filter before it answered), instead of the bare 500 and its generic body. Any other
 * error as it is. Runs on a failed call only.
 */
function withOwnHandlerFailure(err: unknown, gid: string, branchId: string, op: string): unknown {
  if (!(err instanceof DtmServerError) || err.name !== 'DtmServerError') return err;
  const recorded = recordedBranchFailure(gid, branchId, op);
  if (!recorded || recorded.status !== err.status) return err;
  const answered = err.protocol === 'grpc' ? `gRPC status ${err.status}` : `HTTP ${err.status}`;
  const error = new DtmServerError(MESSAGES.ownBranchHandlerFailed(err.endpoint ?? '', answered, recorded.handler, recorded.message, recorded.step), err.body, restatedContext(err));
  REASON_FOR_DTM.set(error, err.message);
  return error;
}

/**
 * TCC and XA: prepared before the app's callback runs, branches called by the app itself, then
 * submitted if the callback succeeded, or aborted (the error's message as rollback reason) if not.
 */
export abstract class GlobalTransaction extends Transaction {
  /** Whether the body threw (and the transaction was aborted). */
  private bodyFailed = false;
  /**
   * The first call of a branch that failed once DTM may hold the branch (a TCC registration, a TCC
   * Try, an XA action): a body that went on after it is refused its submit, which would have DTM
   * confirm or commit every branch it holds, that one included.
   */
  private failedCall?: { branchId: string; op: 'register' | 'try' | 'action'; error: unknown };
  /** The branch calls (`callBranch()`) under way: the body must not end before them ({@link runBody}). */
  private readonly callsUnderWay = new Set<Promise<unknown>>();
  /** Set once the body returned or threw: DTM takes no branch after the submit or abort that follows. */
  private bodyEnded = false;
  /** What this transaction's prepare stores in DTM's `custom_data` (`prepared_by`) (unused by DTM for TCC / XA): what tells its record from another's, before any branch is registered. */
  private readonly mark = randomUUID();

  protected constructor(runtime: TransactionRuntime, gid: string, transType: TransactionType, options?: TransactionOptions, parent?: ParentBranch) {
    super(runtime, gid, transType, options, parent);
  }

  /**
   * @internal Runs `body` inside the global transaction: prepare, body, then submit or abort.
   * Returns what `body` returned. A submit that fails in a way that may not have reached DTM, or
   * is answered by something else than DTM's decision (a gateway's 4xx), is
   * `DtmOutcomeUnknownError` (`prepared`): DTM holds the prepared transaction, and if no
   * submit got through, DTM rolls it back at its timeout; unless DTM's record then shows the
   * submit taken ({@link tookUnanswered}).
   */
  async run<T>(body: (self: this) => Promise<T>): Promise<T> {
    this.assertBody(body);
    this.observeStart();
    let result: T;
    try {
      await this.prepareOwn();
      result = await this.runBody(body);
      try {
        await this.submitRequest(this.request(), false);
      } catch (err) {
        // a gateway's 4xx (any answer but DTM's FAILURE / ONGOING) leaves it prepared too: DTM rolls it back at its timeout unless a submit gets through
        const undecided = stillPreparedError(this.gid, err);
        if (!isUndecidedSubmit(undecided)) throw undecided;
        const status = await this.tookUnanswered(err);
        if (status !== 'succeed' && status !== 'submitted') throw undecided;
      }
    } catch (err) {
      this.observeEnd(this.bodyFailed ? 'aborted' : 'error', err);
      throw err;
    }
    this.observeEnd('submitted');
    return result;
  }

  /**
   * @internal {@link run}, then waits for the final outcome (retrying status queries through DTM
   * restarts, see `DtmClient.waitForFinal`). A branch's FAILURE (a `DtmFailureError` out of `body`)
   * aborts the transaction and is a result (`failed`, with the reason); any other error of `body`
   * aborts it and is thrown. A transaction DTM rolled back before the submit (its timeoutToFail
   * passed while `body` ran: DTM refuses the submit) is a result too (`failed`, DTM's reason, and `result`). A submit that may not have reached DTM is waited out too (as is DTM's
   * FAILURE or ONGOING answer to a submit with `waitResult` whose first round did not finish: a
   * Confirm answering ONGOING or a retryable error), and one DTM did not store (the transaction still prepared 3 s after it, at once after a submit never sent) is sent again.
   * DTM holding no record of it (lost, or the query reached another DTM) is `DtmOutcomeUnknownError` `absent`.
   */
  async runAndWait<T>(body: (self: this) => Promise<T>, wait?: WaitOptions): Promise<GlobalTransactionOutcome<T>> {
    this.assertBody(body);
    assertWaitOptions(wait);
    this.observeStart();
    let outcome: GlobalTransactionOutcome<T>;
    try {
      await this.prepareOwn();
      let result: T | undefined;
      let rolledBack = false;
      try {
        result = await this.runBody(body);
      } catch (err) {
        if (!(err instanceof DtmFailureError)) throw err;
        rolledBack = true; // a branch's FAILURE: the abort is sent, the rollback is the outcome
      }
      // the wait's status queries (and a submit sent again) with the transaction's span active, as its other calls to DTM
      if (rolledBack) outcome = await this.withinObservation((w) => this.runtime.waitForFinal(this.gid, w), wait);
      else {
        // with waitResult, DTM's FAILURE / ONGOING answer while the transaction still runs is not an outcome: the wait below decides
        const again = () => this.submitRequest(this.request(), true);
        let lost: Error | undefined;
        try {
          await again();
        } catch (err) {
          if (!isTransientDtmError(err)) throw stillPreparedError(this.gid, err);
          lost = err as Error;
        }
        // still prepared after the submit: DTM did not store it (see SubmittedHere), so it is sent again
        const final = await this.withinObservation((w) => this.runtime.waitForFinal(this.gid, w, { lost, again, mayBeAbsent: false, transType: this.transType, protocol: this.protocol }), wait).catch((err: unknown) => {
          throw stillPreparedError(this.gid, err);
        });
        outcome = { ...final, result };
      }
    } catch (err) {
      this.observeEnd(this.bodyFailed ? 'aborted' : 'error', err);
      throw err;
    }
    this.observeEnd(outcome.status, outcome.status === 'failed' ? outcome.rollbackReason : undefined);
    return outcome;
  }

  /**
   * Runs `call`, one `callBranch()` (a TCC registration and Try, an XA action), counted as under way
   * until it settles: refused (`DtmUsageError`, nothing sent) once the body ended, as DTM takes no
   * branch after the submit or abort; a body that returns before it settled is aborted ({@link runBody}).
   */
  protected async branchCall<R>(call: () => Promise<R>): Promise<R> {
    if (this.bodyEnded) throw new DtmUsageError(MESSAGES.branchCallAfterBody(this.transType, this.gid), { gid: this.gid });
    const underWay = call();
    this.callsUnderWay.add(underWay);
    try {
      return await underWay;
    } finally {
      this.callsUnderWay.delete(underWay);
    }
  }

  /**
   * Runs `call`, the `op` of branch `branchId` (its TCC registration or Try, an XA action); its
   * failure is kept ({@link failedCall}: the first one) and rethrown, so that a body that catches it
   * and returns is aborted instead of submitted; a nested TCC flags the `BranchInfo` of its Try with
   * it ({@link NESTED_FAILURE}), so that a Try handler that catches it and returns answers FAILURE.
   */
  protected async keepFailure<R>(branchId: string, op: 'register' | 'try' | 'action', call: () => Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (err) {
      const error = op === 'register' ? err : withOwnHandlerFailure(err, this.gid, branchId, op);
      if (this.failedCall === undefined) {
        this.failedCall = { branchId, op, error };
        // nested TCC: the Try it runs in must not answer success should its handler catch this and go on
        const info = this.parent?.info;
        if (info && Object.isExtensible(info) && !(NESTED_FAILURE in info)) Object.defineProperty(info, NESTED_FAILURE, { value: { gid: this.gid, ...this.failedCall } satisfies NestedFailure });
      }
      throw error;
    }
  }

  /**
   * Prepares the transaction, then reads DTM's record: DTM v1.19 takes a prepare of a gid it holds
   * prepared whatever it holds there (`svcPrepare`), another TCC or XA (two run at the same time
   * under one gid, or a gid used again while an old one sits prepared) or a message. This one's
   * branches would join it: its submit would confirm (commit) the other's branches, its abort
   * cancel them. So the record must carry this prepare's {@link mark}, else `DtmGidInUseError`
   * before the body runs, nothing more sent (no abort: the transaction is the other's). A query
   * that fails leaves the prepare as DTM answered it.
   */
  private async prepareOwn(): Promise<void> {
    await this.prepareInDtm(this.request({ customData: JSON.stringify({ prepared_by: this.mark }) }));
    const record = await this.recordIfKnown();
    if (!record || (record.customData as { prepared_by?: unknown } | null | undefined)?.prepared_by === this.mark) return;
    // DTM's MySQL store finds a gid without case: the record may be of another gid
    const detail = record.gid !== this.gid ? MESSAGES.gidHeldOtherCase(record.gid, record.transType) : MESSAGES.globalPreparedOverAnother(this.transType, record.transType);
    throw new DtmGidInUseError('prepare', this.gid, record.status, detail, { protocol: this.protocol });
  }

  /**
   * After a submit left undecided (`err`), DTM's status of it ({@link statusAfterUndecidedSubmit}: one
   * query, on that error path only): `succeed`, the submit took; `submitted` without waitResult, the
   * submit took (DTM's answer to it would have said no more); `submitted` with waitResult,
   * `DtmOutcomeUnknownError` with that status, reported submitted (its first round of Confirms /
   * commits outlasted `lynx.dtm.timeout`, say); no answer after a submit that may have reached DTM,
   * `DtmOutcomeUnknownError` `unknown`; `failed` (DTM rolled it back, its timeoutToFail passed
   * before the submit took), `DtmFailureError` with DTM's rollback reason;
   * `aborting`, `DtmOutcomeUnknownError` `aborting`; `absent` (no record although DTM took the
   * prepare: lost, or the query reached another DTM), `DtmOutcomeUnknownError` `absent` saying so;
   * anything else (still prepared, a submit never sent): DTM holds it prepared.
   */
  private tookUnanswered(err: unknown): Promise<'succeed' | 'submitted' | 'prepared' | undefined> {
    return this.statusAfterUndecidedSubmit(err, !this.options.waitResult, (queryError) => MESSAGES.submitStatusUnknown(this.gid, this.transType, (err as Error).message, queryError));
  }

  /** Resolves once every branch call under way settled (each is bounded by the branch timeout). */
  private async callsSettled(): Promise<void> {
    while (this.callsUnderWay.size > 0) await Promise.allSettled([...this.callsUnderWay]);
  }

  /** Refuses a body that is not a function before anything is sent (DTM would hold a transaction nothing runs). */
  private assertBody(body: unknown): void {
    if (typeof body !== 'function') throw new DtmUsageError(MESSAGES.notAFunction(`the body of ${this.transType} ${this.gid}`, body), { gid: this.gid });
  }

  /**
   * Runs `body` (with the transaction's span active); if it throws, or returns after a branch
   * registration, a TCC Try or an XA action failed ({@link failedCall}: `DtmUsageError`), aborts the transaction (the
   * error's message is the rollback reason, cut to the 1024 characters DTM's SQL stores keep, `…` marking a cut) and rethrows: DTM's answer to the abort does not change
   * what is thrown, and an abort that fails is reported (log, `abort.failed`), never swallowed. With
   * `waitResult` DTM runs the first round of Cancels (rollbacks) inside the abort and answers a
   * branch's error or ONGOING: when DTM then holds the transaction `aborting`, it took the abort and
   * retries those branches, which is no failed abort.
   */
  private async runBody<T>(body: (self: this) => Promise<T>): Promise<T> {
    try {
      const result = await this.withinObservation(body, this);
      this.bodyEnded = true;
      // a callBranch() not awaited: a submit now would have DTM confirm (commit) a branch whose Try (action) has not answered
      const underWay = this.callsUnderWay.size;
      if (underWay > 0) {
        await this.callsSettled();
        throw new DtmUsageError(MESSAGES.branchCallsOutlivedBody(this.transType, this.gid, underWay), { gid: this.gid });
      }
      // the body caught a failed branch call and went on: DTM would confirm (commit) the branches it holds, that one's too
      const failed = this.failedCall;
      if (failed) {
        const cause = reasonForDtm(failed.error);
        const shown = shownBranchId(failed.branchId);
        const message = failed.op === 'register' ? MESSAGES.tccRegisterFailureSwallowed(this.gid, shown, cause) : MESSAGES.branchCallFailureSwallowed(this.transType, this.gid, shown, failed.op, cause);
        throw new DtmUsageError(message, { gid: this.gid, branchId: failed.branchId, cause: failed.error });
      }
      return result;
    } catch (err) {
      this.bodyEnded = true;
      this.bodyFailed = true;
      // a call still under way (the others of a Promise.all one of which failed): DTM's Cancel (rollback) must not overtake its Try (action)
      await this.callsSettled();
      // DTM's SQL stores keep at most 1024 characters of it: a longer one would make DTM refuse the abort (500, "Data too long")
      const reason = cutToStore(reasonForDtm(err));
      const request = this.request({ rollbackReason: reason });
      await this.withinObservation((r) => this.transport.abort(r), request).catch(async (abortError: unknown) => {
        if (request.options.waitResult && !(abortError instanceof DtmFailureError) && (await this.recordIfKnown())?.status === 'aborting') return;
        return this.abortFailed(abortError, err);
      });
      throw err;
    }
  }
}
