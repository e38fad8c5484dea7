import { Inject, Injectable, Logger, Optional, type OnApplicationBootstrap, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { BranchBarrier } from '../barrier/branch-barrier.js';
import { barrierDecisionsOf, barrierMarkOf, verifiedCallOf } from '../branches/branch-call.js';
import { currentPassThroughHeaders } from '../context/dtm-context.js';
import { defaultDtmConfig, isCredentialHeader, isLoopbackHost } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_BRANCH_RESOLVER, DTM_CONFIG, DTM_CONTRACTS, DTM_GRPC_CODECS, DTM_WORKFLOW_ENVIRONMENT } from '../dtm.constants.js';
import type { RemoteBranch } from '../contracts/branch-contract.js';
import { RemoteBranchDirectory } from './remote-branches.js';
import { MESSAGES } from '../dtm.messages.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { DtmDisabledError } from '../errors/dtm-disabled.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { DtmOutcomeUnknownError } from '../errors/dtm-outcome-unknown.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { quotedCallerValue, redactUrl, shorten, withoutCredentials, withoutTrailingSlashes } from '../redact.js';
import { readFailureReason } from '../diagnostics/failure-reason.js';
import { describeUnfinished, diagnoseUnfinished, type UnfinishedBranch } from '../diagnostics/unfinished.js';
import { Msg } from '../transactions/msg.js';
import { Saga } from '../transactions/saga.js';
import type { GlobalTransactionOutcome } from '../transactions/global-transaction.js';
import { Tcc } from '../transactions/tcc.js';
import { assertGid } from '../transactions/transaction.js';
import { assertWaitOptions, DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT } from '../transactions/wait-options.js';
import type { SubmittedHere, TransactionRuntime } from '../transactions/transaction-runtime.js';
import { Xa } from '../transactions/xa.js';
import { WorkflowEngine, type WorkflowEnvironment } from '../workflow/workflow.engine.js';
import type { WorkflowResult } from '../workflow/workflow.types.js';
import { xaLocalTransaction } from '../xa/xa-local-transaction.js';
import type { XaDatabase } from '../xa/xa.types.js';
import type { BranchInfo, BranchResolver, FinalResult, ListFilter, ListPage, PingResult, TransactionOptions, TransactionRecord, WaitOptions } from '../transport/dtm.types.js';
import type { DtmTransport } from '../transport/dtm-transport.js';
import { isTransientDtmError, mayHaveReachedDtm } from '../transport/dtm-transient.js';
import { GrpcCodecs } from '../transport/grpc/grpc-codecs.js';
import { GrpcTransport } from '../transport/grpc/grpc.transport.js';
import { HttpTransport, isAnswerTooLarge } from '../transport/http/http.transport.js';
import { branchStatusesBatched } from '../transport/http/http-wire.js';
import { DtmInstrumentation, UNOBSERVED } from '../observability/dtm-instrumentation.js';
import { InstrumentedTransport } from '../observability/instrumented-transport.js';
import { messageOf } from '../errors/text-of.js';

/**
 * How long DTM's record must keep showing that this app's submit is not stored (no record, or still
 * prepared) before the module submits it again (a request DTM was still storing when the connection
 * broke shows up within this time).
 */
const UNSTORED_CONFIRM_MS = 3000;

/** How long after a finished record with `prepared` branches from a SQL store the module reads it again: past DTM's 200 ms batch of branch statuses. */
const BRANCH_BATCH_MS = 300;

/** At most this many extra reads of a finished record whose branch statuses DTM is still writing (see `settledBranches`). */
const BRANCH_BATCH_READS = 4;

/** What DTM's record of a transaction shows while no submit of it is stored: no record, or still prepared. */
const isUnstored = (status: string): status is 'absent' | 'prepared' => status === 'absent' || status === 'prepared';

/** Longest a probe of an unfinished branch's target may take (less when `lynx.dtm.timeout` is shorter). */
const PROBE_MAX_SECONDS = 3;
/** The least time a wait's look at DTM's record gets when less of the wait is left (one look even with `timeout: 0`). */
const LAST_LOOK_MIN_MS = 1000;

/** A wait at DTM's record: when it ends (epoch ms), and the pause before its next look (ms), which grows. */
interface WaitState {
  deadline: number;
  interval: number;
}

/** How many distinct foreign DTM server names a client logs (a caller chooses them: the log must stay bounded). */
const MAX_LOGGED_FOREIGN_DTM = 100;

/** The application side of DTM: starts, steers and inspects global transactions. Injectable. */
@Injectable()
export class DtmClient implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly rawHttp: HttpTransport;
  /** The HTTP transport, through the instrumentation seam. */
  private readonly http: DtmTransport;
  private grpc?: DtmTransport;
  private readonly runtime: TransactionRuntime;
  private readonly workflows?: WorkflowEngine;
  private readonly logger = new Logger('DtmBranch');
  /** The foreign DTM server names branch calls carried that were logged, each cut to 200 characters (a caller chooses them). */
  private readonly foreignDtm = new Set<string>();
  /** The manifests of the services whose branches the app adds by name. */
  private readonly services: RemoteBranchDirectory;
  /** Set by {@link onModuleDestroy}: a wait for an outcome under way ends at its next look at DTM's record, and one started later looks once. */
  private closed = false;
  /** The waits between two looks at DTM's record: each one's wake-up, which close() calls. */
  private readonly sleepingWaits = new Set<() => void>();

  constructor(
    @Inject(DTM_CONFIG) readonly config: DtmConfig,
    @Optional() @Inject(DTM_BRANCH_RESOLVER) private readonly branches?: BranchResolver,
    @Optional() @Inject(DTM_GRPC_CODECS) private readonly codecs: GrpcCodecs = new GrpcCodecs(),
    @Optional() @Inject(DTM_WORKFLOW_ENVIRONMENT) workflowEnvironment?: WorkflowEnvironment,
    @Optional() @Inject(DTM_CONTRACTS) private readonly contracts: readonly RemoteBranch[] = [],
    @Optional() @Inject(DtmInstrumentation) private readonly instrumentation: DtmInstrumentation = UNOBSERVED,
  ) {
    this.rawHttp = new HttpTransport(config);
    this.http = new InstrumentedTransport(this.rawHttp, instrumentation);
    const services = (this.services = new RemoteBranchDirectory(config));
    this.runtime = {
      config,
      transport: (protocol) => this.transport(protocol),
      passThroughHeaders: currentPassThroughHeaders,
      query: (gid) => this.http.query(gid),
      waitForFinal: (gid, options, submitted, targets) => this.awaitFinal(gid, options ?? {}, submitted, targets),
      branchTarget: (kind, name, protocol) => {
        if (!branches) throw new DtmUsageError(MESSAGES.noRegistry(name));
        return branches.target(kind, name, protocol);
      },
      hasBranch: (kind, name) => branches?.has(kind, name) ?? false,
      branchBarrier: (kind, name, protocol) => branches?.barrierOf?.(kind, name, protocol),
      remoteBranch: (ref, kind, protocol) => services.resolve(ref, kind, protocol),
      remoteFailed: (service, err) => services.failed(service, err),
      instrumentation,
    };
    if (workflowEnvironment) this.workflows = new WorkflowEngine(this.runtime, workflowEnvironment);
  }

  /** False when `lynx.dtm.enabled` is false; every other method then throws `DtmDisabledError`, but `barrier()` (a branch's own barrier, which needs no DTM). */
  get enabled(): boolean {
    return this.config.enabled;
  }

  /** A new global transaction id from the DTM server (`newGid`, on `lynx.dtm.protocol`). */
  async generateGid(): Promise<string> {
    this.assertEnabled('generateGid()');
    return this.transport(this.config.protocol).newGid();
  }

  /** What DTM stores for `gid`: status, rollback reason, options and branches; `null` if DTM has no such transaction (HTTP API). */
  async query(gid: string): Promise<TransactionRecord | null> {
    this.assertEnabled('query()');
    assertGid(gid);
    return this.http.query(gid);
  }

  /** One page of DTM's transactions (`/all`), newest first; pass `nextPosition` back as `position` for the next (HTTP API). */
  async list(filter: ListFilter = {}): Promise<ListPage> {
    this.assertEnabled('list()');
    filter ??= {}; // null from plain JavaScript: no filter
    const problem = listFilterProblem(filter);
    if (problem) throw new DtmUsageError(MESSAGES.badListFilter(problem));
    return this.http.list(filter);
  }

  /**
   * Stops an unfinished transaction: DTM marks it `failed` without calling any more branches
   * (`/forceStop`, HTTP API). A finished transaction, or one DTM does not hold, is a `DtmFailureError`.
   */
  async forceStop(gid: string): Promise<void> {
    this.assertEnabled('forceStop()');
    assertGid(gid);
    try {
      await this.http.forceStop(gid);
    } catch (err) {
      // DTM answers a gid it does not hold with a 500: said as such when a query confirms it
      if (err instanceof DtmServerError && err.status === 500 && (await this.http.query(gid).catch(() => undefined)) === null) {
        throw new DtmFailureError(MESSAGES.failureFromDtm('forceStop', gid, MESSAGES.unknownTransaction(gid)), { gid, endpoint: err.endpoint, protocol: 'http', status: 500, cause: err });
      }
      throw err;
    }
  }

  /** Checks that the DTM server answers on `lynx.dtm.protocol` (and its version over HTTP) and can read its store (a query that finds nothing); changes nothing. */
  async ping(): Promise<PingResult> {
    this.assertEnabled('ping()');
    return this.transport(this.config.protocol).ping();
  }

  /** A new saga with global transaction id `gid`; add steps, then `submit()` or `submitAndWait()`. */
  newSaga(gid: string, options?: TransactionOptions): Saga {
    this.assertEnabled('newSaga()');
    return new Saga(this.runtime, gid, options);
  }

  /** A new two-phase message with global transaction id `gid`; add branches, then `prepare()`+`submit()` or `doAndSubmit()`. */
  newMsg(gid: string, options?: TransactionOptions): Msg {
    this.assertEnabled('newMsg()');
    return new Msg(this.runtime, gid, options);
  }

  /**
   * Runs a TCC transaction: prepares it (with `options`), runs `body` — whose `tcc.callBranch()`
   * registers each branch and calls its Try — then submits (DTM confirms every branch) or, if `body`
   * threw, aborts with the error message as rollback reason (DTM cancels every registered branch)
   * and rethrows. Resolves with what `body` returned.
   */
  async tccGlobalTransaction<T>(gid: string, body: (tcc: Tcc) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.assertEnabled('tccGlobalTransaction()');
    return new Tcc(this.runtime, gid, options).run(body);
  }

  /**
   * {@link tccGlobalTransaction}, then waits for the final outcome (`wait`: see {@link waitForFinal}):
   * resolves `succeed` (with `result`, what `body` returned) or `failed` (a branch's FAILURE thrown
   * out of `body` is a rollback, a result; so is a rollback DTM made while `body` ran, its
   * timeoutToFail passed; any other error of `body` is thrown after the abort).
   * A submit DTM did not store (the transaction still prepared 3 s after it, at once after a submit never sent) is sent again.
   * Throws `DtmOutcomeUnknownError` if DTM has the transaction but its outcome is not known in time.
   */
  async tccGlobalTransactionAndWait<T>(gid: string, body: (tcc: Tcc) => Promise<T>, options?: TransactionOptions, wait?: WaitOptions): Promise<GlobalTransactionOutcome<T>> {
    this.assertEnabled('tccGlobalTransactionAndWait()');
    return new Tcc(this.runtime, gid, options).runAndWait(body, wait);
  }

  /**
   * The sub-transaction barrier of the branch call `branch` (its `@BranchContext()`), on the
   * module's `barrier_table`, its local transactions bounded by `branch_timeout`; what it decides
   * is the call's barrier decision for the instrumentation (hooks, span, metrics).
   */
  barrier(branch: BranchInfo): BranchBarrier {
    const mark = barrierMarkOf(branch);
    return BranchBarrier.from(branch, { table: this.config.barrierTable, timeoutSeconds: this.config.branchTimeout, onDecision: barrierDecisionsOf(branch), behindBarrier: mark?.behindBarrier, refusal: mark?.refusal });
  }

  /**
   * The resource manager's side of an XA branch, for the call `branch` (its `@BranchContext()`):
   * for `op=action` runs `business` on a dedicated connection of `db` inside XA START ... XA PREPARE
   * (PostgreSQL: BEGIN ... PREPARE TRANSACTION), registering the branch with DTM before preparing;
   * for `op=commit|rollback` finishes it (idempotently) without running `business`. Errors roll the
   * branch back and propagate (a `DtmFailureError` then makes the transaction abort).
   * `@XaBranch(name, { db })` does this for a handler.
   */
  async xaLocalTransaction<H, T>(branch: BranchInfo, db: XaDatabase<H>, business: (handle: H) => Promise<T>): Promise<T | undefined> {
    this.assertEnabled('xaLocalTransaction()');
    if (branch?.transType !== 'xa') throw new DtmUsageError(MESSAGES.notInXaBranch());
    const ids = { gid: branch.gid, branchId: branch.branchId };
    if (typeof db?.connect !== 'function' || (db.dialect !== 'mysql' && db.dialect !== 'postgres')) throw new DtmUsageError(MESSAGES.xaDbMissing(db), ids);
    if (typeof business !== 'function') throw new DtmUsageError(MESSAGES.notAFunction(`the local transaction of XA branch ${branch.gid}-${branch.branchId}`, business), ids);
    return xaLocalTransaction({ transport: this.transport(this.callerProtocol(branch)), config: this.config }, branch, db, business);
  }

  /**
   * Nested TCC: inside a `@TccTry` handler, the TCC transaction of the branch being served (its
   * `@BranchContext()`), so that the handler can register and try sub-branches of its own branch
   * (ids `0101`, `0102`, ... under branch `01`; the nested TCCs made with one `BranchInfo` share
   * them, so that a second one goes on at `0102`), as DTM's Go SDK (`TccFromQuery`) allows. The
   * sub-branches are registered with the module's own DTM server, whatever server the call named.
   * Only in a Try (op `try`): elsewhere `DtmUsageError`.
   */
  tccFromBranch(branch: BranchInfo, options?: TransactionOptions): Tcc {
    this.assertEnabled('tccFromBranch()');
    if (branch?.transType !== 'tcc') throw new DtmUsageError(MESSAGES.notInTccBranch());
    // DTM takes sub-branches only while the transaction is prepared: in a Try, never in a Confirm / Cancel (DTM would refuse them with FAILURE)
    if (branch.op !== 'try') throw new DtmUsageError(MESSAGES.nestedTccNotInTry(branch.op), { gid: branch.gid, branchId: branch.branchId });
    // with authenticated calls, its sub-branches' calls and confirm / cancel tokens carry the headers DTM holds for the transaction: those the call's token signed
    const verified = verifiedCallOf(branch);
    if (this.config.branchAuthKeys && verified === undefined) throw new DtmUsageError(MESSAGES.nestedTccNotVerified());
    return new Tcc(this.runtime, branch.gid, { ...options, protocol: this.callerProtocol(branch) }, { branchId: branch.branchId, verified, info: branch });
  }

  /**
   * Runs an XA transaction: prepares it, runs `body` — whose `xa.callBranch()` calls each branch's
   * action — then submits (DTM commits every branch) or, if `body` threw, aborts (DTM rolls back
   * the prepared branches) and rethrows. Resolves with what `body` returned.
   */
  async xaGlobalTransaction<T>(gid: string, body: (xa: Xa) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.assertEnabled('xaGlobalTransaction()');
    return new Xa(this.runtime, gid, options).run(body);
  }

  /** {@link xaGlobalTransaction}, then waits for the final outcome, as {@link tccGlobalTransactionAndWait} does for TCC. */
  async xaGlobalTransactionAndWait<T>(gid: string, body: (xa: Xa) => Promise<T>, options?: TransactionOptions, wait?: WaitOptions): Promise<GlobalTransactionOutcome<T>> {
    this.assertEnabled('xaGlobalTransactionAndWait()');
    return new Xa(this.runtime, gid, options).runAndWait(body, wait);
  }

  /**
   * Runs the workflow `name` (a `@DtmWorkflow` of this app) as `gid` with `input`, or re-attaches
   * to it: idempotent by gid (a finished one answers its outcome; DTM keeps the first input).
   * Resolves `{ status: 'succeed', result }`; throws `DtmFailureError` with the rollback reason
   * after the rollback callbacks ran, or `DtmWorkflowPendingError` when this execution stopped on
   * another error and DTM will resume the workflow; `DtmGidInUseError` (nothing ran) when DTM
   * holds another transaction under `gid` (another type, or a workflow of another name).
   * `options` override the decorator's `transaction` options one by one (one given as `undefined` leaves the decorator's).
   */
  async executeWorkflow<R = unknown>(name: string, gid: string, input?: unknown, options?: TransactionOptions): Promise<WorkflowResult<R>> {
    this.assertEnabled('executeWorkflow()');
    assertGid(gid);
    return this.workflowEngine().execute<R>(name, gid, input, options);
  }

  /** @internal What the resume endpoints run when DTM calls the app back for workflow `name` of `gid` (with the input DTM stored). */
  resumeWorkflow(name: string, gid: string, authHeader?: string): Promise<'succeed' | 'failed' | 'pending'> {
    return this.workflowEngine().resume(name, gid, authHeader);
  }

  private workflowEngine(): WorkflowEngine {
    if (!this.workflows) throw new DtmUsageError(MESSAGES.noWorkflows());
    return this.workflows;
  }

  /**
   * Waits until `gid` is `succeed` or `failed` and returns the final status, rollback reason and
   * branches. A rollback is a result. Status queries that fail (DTM restarting or unreachable, a
   * 5xx answer) are retried until `timeout` seconds have passed; then, or if the transaction is
   * still unfinished, throws {@link DtmOutcomeUnknownError} with the last status DTM reported: wait
   * again for the same gid, never start the work again under a new one.
   */
  async waitForFinal(gid: string, options: WaitOptions = {}): Promise<FinalResult> {
    return this.awaitFinal(gid, options ?? {});
  }

  /**
   * {@link waitForFinal}; with `submitted` (the wait after this app's submit), a transaction whose
   * record keeps showing the submit is not stored (for {@link UNSTORED_CONFIRM_MS}) is submitted
   * again under the same gid (see {@link SubmittedHere}); a wait that ends with DTM holding nothing
   * throws `DtmOutcomeUnknownError` with `lastStatus` `absent`.
   */
  private async awaitFinal(gid: string, options: WaitOptions, submitted?: SubmittedHere, targets?: readonly Record<string, string>[]): Promise<FinalResult> {
    this.assertEnabled('waitForFinal()');
    assertGid(gid);
    assertWaitOptions(options);
    const timeout = options.timeout ?? DEFAULT_WAIT_TIMEOUT;
    const wait: WaitState = { deadline: Date.now() + timeout * 1000, interval: (options.pollInterval ?? DEFAULT_POLL_INTERVAL) * 1000 };
    let lastStatus = 'unknown';
    let lastRecord: TransactionRecord | undefined;
    let lastError: Error | undefined;
    // the error of the last submit sent (undefined: DTM answered it)
    let lastSubmit = submitted?.lost;
    // the first submit never sent (connection refused) and none sent since: none of it can still show up at DTM, so a record showing it unstored is submitted again at once
    let neverSent = lastSubmit !== undefined && !mayHaveReachedDtm(lastSubmit);
    let unstoredSince: number | undefined = neverSent ? -Infinity : undefined;
    const look = async (): Promise<FinalResult | undefined> => {
      let record: TransactionRecord | null | undefined;
      try {
        record = await this.http.query(gid, this.lookBound(wait.deadline));
        lastError = undefined;
      } catch (err) {
        // an answer that cannot be used (too large, not DTM's shape): the outcome is not known, and DTM may hold the transaction
        // a record too large to read (its branches' payloads): the wait goes on with the status alone, to say where DTM is
        if (isAnswerTooLarge(err)) return this.statusAlone(gid, err as DtmServerError, wait, timeout);
        if (err instanceof DtmServerError && !isTransientDtmError(err)) throw new DtmOutcomeUnknownError(MESSAGES.queryUnusable(gid, err.message), gid, lastStatus, { cause: err });
        if (!isTransientDtmError(err)) throw err;
        lastError = err as Error;
      }
      if (record === null && !submitted?.mayBeAbsent) {
        // a TCC / XA this app prepared, DTM now holding no record of it: lost, or the query went to another DTM; not the caller's mistake
        if (submitted) throw new DtmOutcomeUnknownError(MESSAGES.preparedRecordLost(gid, submitted.transType, submitted.lost?.message, false), gid, 'absent', { cause: submitted.lost });
        throw new DtmUsageError(MESSAGES.unknownTransaction(gid), { gid });
      }
      if (record !== undefined) {
        if (record?.status === 'succeed' || record?.status === 'failed') {
          return finalResult((await this.settledBranches(gid, record, wait.deadline)) as TransactionRecord & { status: 'succeed' | 'failed' });
        }
        lastStatus = record?.status ?? 'absent';
        if (record) lastRecord = record;
        // the app closed while this look was under way: nothing more is sent (no submit again)
        if (this.closed) throw new DtmOutcomeUnknownError(MESSAGES.waitClosed(gid, lastStatus), gid, lastStatus, { cause: lastError ?? submitted?.lost });
        if (submitted && isUnstored(lastStatus)) {
          unstoredSince ??= Date.now();
          if (Date.now() - unstoredSince >= UNSTORED_CONFIRM_MS && Date.now() < wait.deadline) {
            unstoredSince = undefined;
            lastError = lastSubmit = await this.submitAgain(gid, lastStatus, submitted, lastSubmit, wait.deadline);
            neverSent = false;
          }
        } else unstoredSince = undefined;
      }
      return undefined;
    };
    const expired = async (): Promise<Error> => {
      // DTM answered no query and no submit of it was sent: it holds it as this app's prepare left it
      const status = neverSent && lastStatus === 'unknown' ? 'prepared' : lastStatus;
      // no submit got stored: DTM calls none of its branches, there is nothing to diagnose
      if (submitted && isUnstored(status)) {
        const cause = lastError ?? submitted.lost;
        return new DtmOutcomeUnknownError(MESSAGES.notStoredAfterSubmit(gid, status, timeout, cause?.message, submitted.transType, status !== lastStatus), gid, status, { cause });
      }
      // only now, after the wait: what DTM still calls, and why (see diagnostics/unfinished.ts)
      const unfinished = lastRecord && !lastError ? await this.diagnose(lastRecord, targets) : [];
      return new DtmOutcomeUnknownError(MESSAGES.notFinal(gid, lastStatus, timeout, lastError?.message) + describeUnfinished(unfinished), gid, lastStatus, { cause: lastError ?? submitted?.lost }, unfinished);
    };
    return this.waitLoop(wait, look, () => new DtmOutcomeUnknownError(MESSAGES.waitClosed(gid, lastStatus), gid, lastStatus, { cause: lastError ?? submitted?.lost }), expired);
  }

  /**
   * The loop of a wait at DTM's record ({@link awaitFinal}, {@link statusAlone}): `look`, whose
   * result ends the wait (as what it throws does); then, the app closed, the error of `closed()`
   * (DTM goes on with the transaction: a closed app must not poll DTM until the deadline); past
   * `wait.deadline`, the error of `expired()`; else a pause of `wait.interval` ms (to the deadline
   * at most; the app's close ends it), 1.5 times longer each time up to 1 s.
   */
  private async waitLoop<T>(wait: WaitState, look: () => Promise<T | undefined>, closed: () => Error, expired: () => Promise<Error> | Error): Promise<T> {
    for (;;) {
      const result = await look();
      if (result !== undefined) return result;
      if (this.closed) throw closed();
      if (Date.now() >= wait.deadline) throw await expired();
      await this.pause(Math.min(wait.interval, Math.max(0, wait.deadline - Date.now())));
      wait.interval = Math.min(wait.interval * 1.5, 1000);
    }
  }

  /**
   * The seconds a look at DTM's record may take within a wait ending at `deadline`: what is left of
   * it (at least {@link LAST_LOOK_MIN_MS}) when that is less than `lynx.dtm.timeout`, else undefined
   * (the transport's own timeout): a DTM that does not answer holds the wait up to about its
   * `timeout`, not `lynx.dtm.timeout` past it.
   */
  private lookBound(deadline: number): number | undefined {
    const left = Math.max(deadline - Date.now(), LAST_LOOK_MIN_MS);
    return left < this.config.timeout * 1000 ? left / 1000 : undefined;
  }

  /** Waits `ms` between two looks of a wait at DTM's record, or until the app closes. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepingWaits.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepingWaits.add(wake);
    });
  }

  /**
   * `record`, finished, with its branch statuses as DTM wrote them in the end: on a SQL store DTM
   * writes them in batches (see {@link branchStatusesBatched}), so a finished record whose branches
   * still read `prepared` is read again {@link BRANCH_BATCH_MS} later, and again while that changes
   * them (at most {@link BRANCH_BATCH_READS} reads, within the wait's deadline). Nothing more on
   * boltdb and Redis, which write them before the transaction's status.
   */
  private async settledBranches(gid: string, record: TransactionRecord, deadline: number): Promise<TransactionRecord> {
    const statuses = (r: TransactionRecord) => r.branches.map((b) => b.status).join();
    for (let reads = 0; reads < BRANCH_BATCH_READS && branchStatusesBatched(record) && record.branches.some((b) => b.status === 'prepared'); reads++) {
      if (Date.now() + BRANCH_BATCH_MS > deadline) break;
      await this.pause(BRANCH_BATCH_MS);
      const again = await this.http.query(gid).catch(() => null);
      if (!again || again.status !== record.status || again.branches.length !== record.branches.length) break;
      const changed = statuses(again) !== statuses(record);
      record = again;
      if (!changed) break;
    }
    return record;
  }

  /**
   * The end of a wait whose status query DTM answered with more than `max_answer_bytes` (`tooLarge`;
   * the record holds each branch's payload several times): reads the status alone (DTM's `/all` of
   * `gid`, no branches; each read within what is left of the wait) until it is final or the wait's
   * deadline, and throws the error that says it, the setting to raise to read the whole record (its
   * branches, and that it holds this transaction's steps); the app closed meanwhile, the error that
   * says so, as {@link awaitFinal}'s.
   */
  private statusAlone(gid: string, tooLarge: DtmServerError, wait: WaitState, timeout: number): Promise<never> {
    let status = 'unknown';
    const readAlone = (final: boolean) => new DtmOutcomeUnknownError(MESSAGES.recordTooLarge(gid, status, final, timeout, this.config.maxAnswerBytes), gid, status, { cause: tooLarge });
    const look = async (): Promise<undefined> => {
      try {
        status = (await this.http.list({ gid }, this.lookBound(wait.deadline))).transactions.find((t) => t.gid === gid)?.status ?? 'absent';
      } catch (err) {
        if (!isTransientDtmError(err)) throw new DtmOutcomeUnknownError(MESSAGES.queryUnusable(gid, tooLarge.message), gid, status, { cause: tooLarge });
      }
      if (status === 'succeed' || status === 'failed') throw readAlone(true);
      return undefined;
    };
    return this.waitLoop<never>(wait, look, () => new DtmOutcomeUnknownError(MESSAGES.waitClosed(gid, status), gid, status, { cause: tooLarge }), () => readAlone(false));
  }

  /**
   * Submits `gid` again after DTM's record showed for {@link UNSTORED_CONFIRM_MS} that the submit is
   * not stored (at once after a first submit never sent) (warns, naming `lost`, the error of the
   * last submit: it is DTM's store failing, or a submit lost on the way). Over gRPC, first lets a
   * channel to DTM backing off its reconnect connect (by the wait's `deadline`). Returns the error of a submit
   * that did not get through (the wait goes on, DTM's answers decide); throws one that says the
   * transaction itself is refused (another transaction under the gid, a usage error).
   */
  private async submitAgain(gid: string, status: 'absent' | 'prepared', submitted: SubmittedHere, lost: Error | undefined, deadline: number): Promise<Error | undefined> {
    this.logger.warn(MESSAGES.submitAgain(gid, status, lost?.message, lost !== undefined && !mayHaveReachedDtm(lost), submitted.transType));
    try {
      // DTM answered the look over HTTP: its gRPC channel may still back off the reconnect, and would fail the submit at once
      if (submitted.protocol === 'grpc') {
        await this.transport('grpc').connected?.(Math.max(0, deadline - Date.now()));
        // the app closed meanwhile: nothing more is sent, the wait ends as closed
        if (this.closed) return lost;
      }
      await submitted.again();
      return undefined;
    } catch (err) {
      // FAILURE: DTM refused it as submitted already (or rolled it back): its record says which
      if (err instanceof DtmFailureError && !(err instanceof DtmGidInUseError)) return err;
      if (!isTransientDtmError(err)) throw err;
      return err as Error;
    }
  }

  /** The unfinished branches of `record`, each with its cause when found; probes only this app's routes and `targets` (the transaction's own). */
  private async diagnose(record: TransactionRecord, targets?: readonly Record<string, string>[]): Promise<UnfinishedBranch[]> {
    const known = new Set<string>();
    for (const step of targets ?? []) for (const op in step) if (step[op]) known.add(step[op]);
    const branches = this.branches;
    const probeMs = Math.min(this.config.timeout, PROBE_MAX_SECONDS) * 1000;
    try {
      return await diagnoseUnfinished(record, { ownRoute: (url) => branches?.routeAt?.(url), targets: known, probeMs });
    } catch (err) {
      // the diagnosis only adds to the error the wait throws: it must not replace it
      this.logger.warn(`gid ${record.gid}: could not diagnose the unfinished branches: ${messageOf(err)}`);
      return [];
    }
  }

  /**
   * Warns at start-up that the headers `pass_through_headers` forwards that look like credentials
   * (Authorization, Cookie, API keys, tokens) are stored in DTM and readable through its API; a
   * request id or a tenant, which may be stored, gets no warning. Warns too that an `app_url` with
   * credentials puts them into every branch URL of this app, which DTM stores and shows alike; and
   * that `grpc_server` names a DTM beside a `server_url` left at its default (localhost), where
   * query, the waits and the ping would go (DTM's gRPC API has none of them), or, with `protocol:
   * grpc`, a `server_url` naming another DTM beside a `grpc_server` left at its default.
   */
  onModuleInit(): void {
    const credentials = this.config.passThroughHeaders.filter(isCredentialHeader);
    if (this.config.enabled && credentials.length > 0) this.logger.warn(MESSAGES.passThroughStored(credentials));
    const appUrl = this.config.appUrl;
    if (this.config.enabled && appUrl !== undefined && withoutCredentials(appUrl) !== appUrl) this.logger.warn(MESSAGES.appUrlCredentialsStored(redactUrl(appUrl)));
    if (this.config.enabled && serverUrlLeftBesideGrpc(this.config)) this.logger.warn(MESSAGES.serverUrlDefaultBesideGrpc(this.config.grpcServer, this.config.serverUrl));
    if (this.config.enabled && grpcServerLeftBesideServerUrl(this.config)) this.logger.warn(MESSAGES.grpcServerDefaultBesideServerUrl(this.config.serverUrl, this.config.grpcServer));
  }

  /**
   * Checks the branches of the module's `contracts` against their services' manifests at start-up:
   * an unknown service, an unknown branch (the message lists the service's branches) or a kind
   * mismatch fails start-up with `DtmRemoteBranchError`; a service that does not answer is checked on first use.
   */
  async onApplicationBootstrap(): Promise<void> {
    if (this.config.enabled && this.contracts.length > 0) await this.services.check(this.contracts);
  }

  /**
   * Closes the connections when the Nest app shuts down (calls under way go on to their answer), and
   * ends the waits for an outcome under way at once ({@link waitForFinal}, `submitAndWait()`, `...AndWait`):
   * `DtmOutcomeUnknownError` saying the app closed. A message prepared and not submitted ends `prepared`
   * for the instrumentation (its span, its count).
   */
  onModuleDestroy(): void {
    this.closed = true;
    this.instrumentation.endParked(); // messages prepared and never submitted: their spans end (prepared)
    for (const wake of this.sleepingWaits) wake();
    this.http.close();
    this.grpc?.close();
  }

  /** The transport of `protocol`; the gRPC one (and the gRPC libraries) only on first use. */
  private transport(protocol: DtmProtocol): DtmTransport {
    if (protocol === 'http') return this.http;
    this.grpc ??= new InstrumentedTransport(new GrpcTransport(this.config, this.rawHttp, this.codecs), this.instrumentation);
    return this.grpc;
  }

  private assertEnabled(operation: string): void {
    if (!this.config.enabled) throw new DtmDisabledError(operation);
  }

  /**
   * How the app that called `branch` talks to DTM: its `dtm` (query parameter, or `dtm-dtm`
   * metadata) is an HTTP URL or a gRPC address. Only that is taken from it: the caller chooses the
   * value, so the module talks to its own `server_url` / `grpc_server`, never to the server a call
   * names. A name that is not the configured server is logged (once per name, credentials redacted).
   */
  private callerProtocol(branch: BranchInfo): DtmProtocol {
    const named = branch.dtm;
    if (!named) return 'http';
    const protocol: DtmProtocol = /^https?:\/\//i.test(named) ? 'http' : 'grpc';
    const configured = protocol === 'http' ? this.config.serverUrl : this.config.grpcServer;
    // the module sends its own server_url to the branches it calls without credentials: that is the configured server too
    const bare = withoutTrailingSlashes(named);
    // kept cut: a caller can send some 16 KiB per name, and names that differ past 200 characters are logged once
    const kept = shorten(named);
    if (bare !== configured && bare !== withoutCredentials(configured) && !this.foreignDtm.has(kept) && this.foreignDtm.size < MAX_LOGGED_FOREIGN_DTM) {
      this.foreignDtm.add(kept);
      const shown = quotedCallerValue(shorten(redactUrl(named)));
      this.logger.warn(MESSAGES.foreignDtm(shown, protocol === 'http' ? 'server_url' : 'grpc_server', redactUrl(configured)));
    }
    return protocol;
  }
}

/** The final result of `record`: its rollback reason as the branch said it, DTM's text on `rawRollbackReason`. */
function finalResult(record: TransactionRecord & { status: 'succeed' | 'failed' }): FinalResult {
  const result: FinalResult = { gid: record.gid, status: record.status, branches: record.branches, transaction: record };
  if (record.rollbackReason !== undefined) {
    result.rollbackReason = readFailureReason(record.rollbackReason).message;
    result.rawRollbackReason = record.rollbackReason;
  }
  return result;
}

/** What is wrong with a `list()` filter, if anything: DTM would answer a 500, or every transaction, or a page too big to read. */
function listFilterProblem(filter: ListFilter): string | undefined {
  if (typeof filter !== 'object') return `the filter must be an object, got ${typeof filter}`;
  const { limit, status, transType, gid, position, createdAfter, createdBefore } = filter;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX)) return `limit must be a whole number from 1 to ${LIST_LIMIT_MAX}, got ${JSON.stringify(limit) ?? typeof limit}`;
  for (const [key, value] of Object.entries({ status, transType, gid, position })) {
    if (value !== undefined && typeof value !== 'string') return `${key} must be a string, got ${typeof value}`;
  }
  for (const [key, value] of Object.entries({ createdAfter, createdBefore })) {
    if (value !== undefined && !(value instanceof Date && !Number.isNaN(value.getTime()))) return `${key} must be a valid Date`;
  }
  return undefined;
}

/** The largest `list()` page asked for: a page of transactions with their payloads must stay readable (max_answer_bytes). */
const LIST_LIMIT_MAX = 1000;

/** Whether `url` names this host's loopback ({@link isLoopbackHost}) at `port`: where the defaults put DTM (HTTP 36789, gRPC 36790). */
function onLoopbackAt(url: string, port: string): boolean {
  try {
    const parsed = new URL(url);
    return isLoopbackHost(parsed.hostname.toLowerCase()) && parsed.port === port;
  } catch {
    return false;
  }
}

/**
 * Whether `server_url` is left at its default (DTM on localhost) while `grpc_server` names another
 * DTM address than the default's (this host's loopback, port 36790): the transactions over gRPC reach
 * that DTM, but query, list, forceStop, the waits and the ping's version (HTTP only) go to localhost.
 */
function serverUrlLeftBesideGrpc(config: DtmConfig): boolean {
  return config.serverUrl === defaultDtmConfig().serverUrl && !onLoopbackAt(`http://${config.grpcServer}`, '36790');
}

/**
 * Whether, with `protocol: grpc`, `grpc_server` is left at its default (DTM on localhost) while
 * `server_url` names another DTM than the default's (this host's loopback, port 36789): query and the
 * waits reach that DTM, but every transaction goes to localhost's gRPC port.
 */
function grpcServerLeftBesideServerUrl(config: DtmConfig): boolean {
  return config.protocol === 'grpc' && config.grpcServer === defaultDtmConfig().grpcServer && !onLoopbackAt(config.serverUrl, '36789');
}
