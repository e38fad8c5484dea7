import { Logger } from '@nestjs/common';
import type { TransactionOptions, TransactionRecord } from '../transport/dtm.types.js';
import { isForbiddenBranchHeader, TRACE_CONTEXT_HEADERS } from '../config/dtm-config.keys.js';
import { restatedContext, type DtmProtocol } from '../errors/dtm-error.js';
import { MESSAGES } from '../dtm.messages.js';
import { shorten } from '../redact.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { cutToStore } from '../transport/dtm-limits.js';
import { DtmWorkflowPendingError } from '../errors/dtm-workflow-pending.error.js';
import type { TransactionRuntime } from '../transactions/transaction-runtime.js';
import { RESUME_AUTH_TARGET, WORKFLOW_RESUME_BRANCH, WorkflowTransaction } from '../transactions/workflow-transaction.js';
import { AUTH_HEADERS_HEADER, AUTH_ISSUED_HEADER, headersOfCall, issueProblem, tokenInHeader } from '../auth/branch-auth.js';
import { currentPassThroughHeaders, dtmContext, passThroughAllowList } from '../context/dtm-context.js';
import { DtmUnauthenticatedError } from '../errors/dtm-unauthenticated.error.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { mayHaveReachedDtm } from '../transport/dtm-transient.js';
import { branchKeysProblem } from '../transport/branch-keys.js';
import type { XaDatabase } from '../xa/xa.types.js';
import { storedJson, WorkflowExecution } from './workflow-execution.js';
import type { DtmWorkflowRegistry, WorkflowDefinition } from './workflow.registry.js';
import type { WorkflowResult } from './workflow.types.js';

/** What workflow executions need from the module serving the app. */
export interface WorkflowEnvironment {
  registry: DtmWorkflowRegistry;
  /** Where DTM resumes a workflow of `protocol`: the module's resume route (`app_url` + path) or `grpc_app_address/workflow.Workflow/Execute`. */
  resumeTarget(protocol: DtmProtocol): string;
  barrierConnections: ReadonlyMap<string, unknown>;
  xaDatabases: ReadonlyMap<string, XaDatabase>;
}

/** The input of a workflow as DTM stores it (and sends back on resume): a JSON object, so strict JSON body parsers take it. */
interface StoredInput {
  v?: unknown;
}

/** @internal A resume call no workflow of DTM's matches (no such gid, not a workflow, another name): the resume endpoints answer 400 and log a warning. */
export class WorkflowResumeRefused extends DtmUsageError {}

/**
 * Runs workflows: a first execution (`execute`, idempotent by gid) or one DTM asks for (`resume`),
 * one at a time per gid in this process. An execution's outcome: the function returned → commit
 * callbacks, then submit `succeed`; it threw `DtmFailureError` → rollback callbacks, then submit
 * `failed`; anything else (a step's ONGOING, an unreachable branch, an error of DTM's own API, a
 * divergence) → nothing more is sent, and DTM resumes it later.
 */
export class WorkflowEngine {
  private readonly logger = new Logger('DtmWorkflow');
  private readonly running = new Map<string, { name: string; done: Promise<WorkflowResult> }>();

  constructor(
    private readonly runtime: TransactionRuntime,
    private readonly env: WorkflowEnvironment,
  ) {}

  /** Starts (or re-attaches to) workflow `name` with `gid`: its result, `DtmFailureError` with the rollback reason, or `DtmWorkflowPendingError`. */
  execute<R>(name: string, gid: string, input: unknown, options?: TransactionOptions): Promise<WorkflowResult<R>> {
    const definition = this.env.registry.get(name);
    return this.once(name, gid, () => this.run(definition, gid, input, options)) as Promise<WorkflowResult<R>>;
  }

  /**
   * What the resume endpoints call when DTM calls the app back: runs workflow `name` of `gid` with
   * the input DTM stored for it. Nothing of the call itself is trusted but the gid: the workflow
   * must exist in DTM, be a workflow, and carry this name; its input is read from DTM. With
   * authenticated calls, `authHeader` (the call's `dtm-auth`) must hold the token the app that
   * started the workflow stored with it, else `DtmUnauthenticatedError`. An
   * execution already running in this process answers "pending" at once.
   */
  async resume(name: string, gid: string, authHeader?: string): Promise<'succeed' | 'failed' | 'pending'> {
    const auth = this.runtime.config.branchAuthKeys;
    // a gid no transaction can have (anyone can call this endpoint): refused before it is queried, and said (answered, logged) cut, as the name
    if (branchKeysProblem(gid, '') !== undefined) {
      if (auth) throw new DtmUnauthenticatedError(MESSAGES.workflowResumeUnsigned(shorten(name), shorten(gid)), { gid: shorten(gid) });
      throw new WorkflowResumeRefused(MESSAGES.workflowResumeRefused(shorten(name), shorten(gid)), { gid: shorten(gid) });
    }
    if (!this.env.registry.has(name)) throw new DtmWorkflowPendingError(shorten(name), gid, new Error(MESSAGES.workflowResumeUnknown(shorten(name), gid)));
    if (!auth && this.running.has(gid)) return 'pending';
    const record = await this.runtime.query(gid);
    const stored = record?.customData as { name?: unknown; data?: unknown } | undefined;
    if (!record || record.transType !== 'workflow' || stored?.name !== name) {
      // with authenticated calls, said as a call that does not verify: a caller holding no token learns nothing of DTM's records
      if (auth) throw new DtmUnauthenticatedError(MESSAGES.workflowResumeUnsigned(name, gid), { gid });
      throw new WorkflowResumeRefused(MESSAGES.workflowResumeRefused(name, gid), { gid });
    }
    if (auth) {
      // the token DTM stored with the workflow names its gid, name and stored input: only the app that started it made one
      const input = typeof stored.data === 'string' ? Buffer.from(stored.data, 'base64') : undefined;
      // ... and the forwarded headers DTM stored with it (those its stored list names), which the resumed run passes on
      const { headers, issued } = storedSigned(record.options.branchHeaders);
      if (headers === null) throw new DtmUnauthenticatedError(MESSAGES.workflowResumeUnsigned(name, gid), { gid });
      const call = { channel: 'dtm' as const, gid, transType: 'workflow', branchId: WORKFLOW_RESUME_BRANCH, op: name, target: RESUME_AUTH_TARGET, payload: input, headers, issued };
      if (!auth.verify(call, tokenInHeader(authHeader, name, WORKFLOW_RESUME_BRANCH))) throw new DtmUnauthenticatedError(MESSAGES.workflowResumeUnsigned(name, gid), { gid });
      // ... for the workflow DTM holds: created when its tokens were issued, not re-created under its gid after DTM forgot it
      const window = this.runtime.config.branchAuthIssueWindow;
      const apart = issueProblem(record.createTime, issued, window);
      if (apart !== undefined) throw new DtmUnauthenticatedError(MESSAGES.workflowResumeRefusedFor(name, gid, MESSAGES.authRecreated(apart, window)), { gid });
      if (this.running.has(gid)) return 'pending';
    }
    if (record.status === 'succeed' || record.status === 'failed') return record.status;
    try {
      const definition = this.env.registry.get(name);
      await this.once(name, gid, () => this.runStored(definition, gid, inputOf(stored, undefined), record));
      return 'succeed';
    } catch (err) {
      if (err instanceof DtmFailureError) return 'failed';
      if (err instanceof DtmWorkflowPendingError) {
        this.logger.warn(err.message);
        return 'pending';
      }
      throw err;
    }
  }

  /**
   * `run`, or the execution of the same workflow already running for `gid` in this process. One of
   * another workflow under that gid is not this one's outcome: `run` then goes to DTM, whose record
   * of the other refuses it (`DtmGidInUseError`).
   */
  private once(name: string, gid: string, run: () => Promise<WorkflowResult>): Promise<WorkflowResult> {
    const current = this.running.get(gid);
    if (current && current.name !== name) return run();
    if (current) return current.done;
    const done = run().finally(() => this.running.delete(gid));
    this.running.set(gid, { name, done });
    return done;
  }

  /** `stored`: DTM's record, for a run of the workflow DTM holds (a resume, a re-attach); `reattached`: the execution that found DTM holding the workflow with other options, whose observation this one goes on with. */
  private async run(definition: WorkflowDefinition, gid: string, input: unknown, options: TransactionOptions = {}, stored?: TransactionRecord, reattached?: WorkflowTransaction): Promise<WorkflowResult> {
    // an option given as undefined (an unset variable, say) leaves the decorator's value
    const given = typeof options === 'object' && options !== null ? Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) : options;
    const tx = new WorkflowTransaction(this.runtime, gid, { ...definition.options.transaction, ...given });
    // its tokens sign the issue time of those DTM stored, which DTM's record is checked against
    if (stored) tx.runsAsIssued(storedSigned(stored.options.branchHeaders).issued);
    if (reattached) tx.continues(reattached);
    return tx.observed(() => this.runExecution(tx, definition, gid, input, stored !== undefined));
  }

  /**
   * An execution of a workflow DTM holds (`record`): with the options and protocol DTM stored for it
   * (branch headers, retry interval, ...), not the module's defaults nor a later caller's. The
   * forwarded headers are DTM's stored ones, none the request adds (only its trace context): for
   * the steps, and for what the workflow's code starts (as the request that started it passed them on).
   */
  private runStored(definition: WorkflowDefinition, gid: string, input: unknown, record: TransactionRecord, reattached?: WorkflowTransaction): Promise<WorkflowResult> {
    const options = resumedOptions(record);
    const headers = resumeHeaders(currentPassThroughHeaders(), options.branchHeaders, passThroughAllowList(this.runtime.config));
    return dtmContext.run({ headers }, () => this.run(definition, gid, input, options, record, reattached));
  }

  private async runExecution(tx: WorkflowTransaction, definition: WorkflowDefinition, gid: string, input: unknown, fromStore: boolean): Promise<WorkflowResult> {
    // DTM resumes a gRPC workflow with its name in gRPC metadata, which grpc-go refuses to send for such a name (every resume would fail)
    if (tx.protocol === 'grpc' && !GRPC_METADATA_VALUE.test(definition.name)) throw new DtmUsageError(MESSAGES.workflowNameNotGrpc(definition.name), { gid });
    const progress = await tx.prepare(definition.name, storedJson({ v: input } satisfies StoredInput, `the input of workflow "${definition.name}"`, gid), this.env.resumeTarget(tx.protocol)).catch((err: unknown) => {
      throw unansweredPrepare(definition.name, gid, err);
    });
    // DTM answers with the transaction it holds under the gid, whatever its type and name: the HTTP
    // answer says which, over gRPC it is read back (and with it the input and result the gRPC API does not answer).
    // DTM's boltdb and Redis stores keep no custom data (no name) once a workflow is finished
    const held =
      progress.transType !== undefined
        ? { ...progress, transType: progress.transType }
        : await this.runtime.query(gid).catch((err: unknown) => {
            throw unreadPrepared(definition.name, gid, err);
          });
    // DTM's MySQL store finds a gid without case: a workflow of another gid is another one, whose steps, input and outcome are not this one's
    if (held?.gid !== undefined && held.gid !== gid) {
      throw new DtmGidInUseError(`executeWorkflow(${definition.name})`, gid, progress.status, MESSAGES.gidHeldOtherCase(held.gid, held.transType));
    }
    const stored = customDataOf(held?.customData);
    if (held && (held.transType !== 'workflow' || (typeof stored?.name === 'string' && stored.name !== definition.name))) {
      throw new DtmGidInUseError(`executeWorkflow(${definition.name})`, gid, progress.status, MESSAGES.workflowGidHeld(held.transType, stored?.name, definition.name));
    }
    if (progress.status === 'succeed') return { status: 'succeed', result: resultOf(progress.result ?? held?.result) };
    if (progress.status === 'failed') {
      // the module always submits a reason: none is DTM's forceStop, which ran no rollback callback
      if (!progress.rollbackReason) throw new DtmFailureError(MESSAGES.workflowForceStopped(definition.name, gid), { gid, raw: 'FAILURE' });
      // the reason this module submitted, as it is: a workflow's holds no saga step's URL or branch answer to read out of it
      throw new DtmFailureError(progress.rollbackReason, { gid });
    }
    // every execution runs with the input DTM stored (it keeps the first prepare's, and resumes with it),
    // also one that finds no step recorded yet
    input = inputOf(stored, input);
    if (!fromStore) {
      // re-attached by gid to a workflow an earlier execution started (steps recorded, or options
      // DTM holds that are not this call's: a new one holds the call's own): it runs as DTM's resume
      // runs it, with what DTM stored (the first call's branch headers, timeouts), not this call's.
      // The transaction DTM holds: over HTTP its prepareWorkflow answer, over gRPC the query above
      const record = progress.transType !== undefined ? progress.stored : (held as TransactionRecord | null | undefined);
      if (record && (progress.progresses.length > 0 || !runsAsStored(tx, record))) return this.runStored(definition, gid, input, record, tx);
    }
    const execution = new WorkflowExecution(tx, definition.name, input, progress, {
      barrierConnections: this.env.barrierConnections,
      xaDatabases: this.env.xaDatabases,
      barrierTable: this.runtime.config.barrierTable,
      compensateFailedStep: definition.options.compensateFailedStep === true,
    });
    let value: unknown;
    try {
      value = await definition.run(execution as WorkflowExecution<never>);
    } catch (err) {
      // a DtmGidInUseError (a transaction the workflow's code runs found its gid taken, by its own first run on a resume) says nothing failed: pending, never a rollback
      if (!(err instanceof DtmFailureError) || err instanceof DtmGidInUseError) throw new DtmWorkflowPendingError(definition.name, gid, err);
      assertRecorded(definition, gid, execution);
      assertAwaited(definition, gid, execution);
      assertReplayed(definition, gid, execution, 'rollback');
      await this.settle(definition, gid, () => execution.runPhase2('rollback'));
      // never an empty reason: DTM holds a forceStop's failure without one; cut as DTM keeps it, so every later call throws the same
      const reason = cutToStore(err.reason || 'FAILURE');
      const ended = await this.finish(definition, gid, tx, 'failed', reason, undefined);
      throw new DtmFailureError(ended?.rollbackReason || reason, { gid, cause: err });
    }
    assertRecorded(definition, gid, execution);
    assertAwaited(definition, gid, execution);
    assertReplayed(definition, gid, execution, 'commit');
    let result: string;
    let encoded: string;
    try {
      result = storedJson({ v: value } satisfies StoredInput, `the result of workflow "${definition.name}"`, gid);
      // checked before the commit callbacks: a result DTM cannot keep would leave the workflow pending with them done
      encoded = tx.storedResult(definition.name, result);
    } catch (err) {
      throw new DtmWorkflowPendingError(definition.name, gid, err);
    }
    await this.settle(definition, gid, () => execution.runPhase2('commit'));
    const ended = await this.finish(definition, gid, tx, 'succeed', undefined, encoded);
    return { status: 'succeed', result: ended ? resultOf(ended.result) : (JSON.parse(result) as StoredInput).v };
  }

  /**
   * Submits the workflow's end. When the submit fails, DTM's record is read: one holding the
   * workflow ended as this execution ends it is the outcome (another execution of it submitted
   * first, and DTM refused this one's: "storage: NotFound"; or DTM took the submit and its answer
   * was lost). Otherwise the workflow is pending, the submit's error its cause.
   */
  private async finish(definition: WorkflowDefinition, gid: string, tx: WorkflowTransaction, status: 'succeed' | 'failed', reason: string | undefined, result: string | undefined): Promise<TransactionRecord | undefined> {
    try {
      await tx.finish(status, reason, result);
      return undefined;
    } catch (err) {
      const record = await this.runtime.query(gid).catch(() => null);
      if (record?.status === status) return record;
      throw new DtmWorkflowPendingError(definition.name, gid, err);
    }
  }

  /** Phase 2: an error leaves the workflow to DTM (pending); it is never read as a business FAILURE. */
  private async settle(definition: WorkflowDefinition, gid: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      throw new DtmWorkflowPendingError(definition.name, gid, err);
    }
  }
}

/**
 * `err` of the prepareWorkflow that starts an execution of workflow `name` under `gid`; when the
 * request may have reached DTM ({@link mayHaveReachedDtm}: no complete answer in time, a reset),
 * DTM may hold the workflow prepared and resume it: a `DtmUnavailableError` that says so and to call
 * again with the same gid, `err` its cause. Other errors as they are.
 */
function unansweredPrepare(name: string, gid: string, err: unknown): unknown {
  if (!(err instanceof DtmUnavailableError) || !mayHaveReachedDtm(err)) return err;
  return new DtmUnavailableError(MESSAGES.workflowPrepareUnanswered(name, gid, err.message), { ...restatedContext(err), gid });
}

/**
 * `err` of the read-back (DTM's HTTP API, `server_url`) of a workflow `name` DTM took over gRPC
 * under `gid`: DTM holds it prepared, so a `DtmUnavailableError` says so and to call again with the
 * same gid, `err` its cause (not "never reached DTM", as the prepare's own "could not reach" is).
 * Other errors as they are.
 */
function unreadPrepared(name: string, gid: string, err: unknown): unknown {
  if (!(err instanceof DtmUnavailableError)) return err;
  return new DtmUnavailableError(MESSAGES.workflowPreparedUnread(name, gid, err.message), { ...restatedContext(err), gid });
}

/** Leaves the workflow pending (`DtmWorkflowPendingError`, its cause the record's error) when a step's record failed in `execution`, whatever its code did with the error. */
function assertRecorded(definition: WorkflowDefinition, gid: string, execution: WorkflowExecution<unknown>): void {
  try {
    execution.assertAllRecorded();
  } catch (err) {
    throw new DtmWorkflowPendingError(definition.name, gid, err);
  }
}

/** Leaves the workflow pending (`DtmWorkflowPendingError`, its cause a `DtmUsageError`) when `execution`'s code ended without awaiting a step. */
function assertAwaited(definition: WorkflowDefinition, gid: string, execution: WorkflowExecution<unknown>): void {
  try {
    execution.assertAllAwaited();
  } catch (err) {
    throw new DtmWorkflowPendingError(definition.name, gid, err);
  }
}

/** Leaves the workflow pending (`DtmWorkflowPendingError`, its cause the divergence) when `execution` ended before a step an earlier one recorded, or now ends in `ending` where an earlier one recorded a callback of the other phase 2. */
function assertReplayed(definition: WorkflowDefinition, gid: string, execution: WorkflowExecution<unknown>, ending: 'commit' | 'rollback'): void {
  try {
    execution.assertNothingLeftBehind();
    execution.assertSameEnding(ending);
  } catch (err) {
    throw new DtmWorkflowPendingError(definition.name, gid, err);
  }
}

/**
 * Whether execution `tx` runs with the options DTM stored in `record` (its protocol, timeouts, retry
 * interval, and branch headers but those made per call: trace context, the module's `dtm-*` tokens).
 */
function runsAsStored(tx: WorkflowTransaction, record: TransactionRecord): boolean {
  const mine = tx.options;
  const stored = record.options;
  const seconds = (value: number | undefined) => value || undefined; // DTM answers none for 0
  if (record.protocol !== tx.protocol || seconds(stored.timeoutToFail) !== seconds(mine.timeoutToFail)) return false;
  if (seconds(stored.retryInterval) !== seconds(mine.retryInterval) || seconds(stored.branchTimeout) !== seconds(mine.branchTimeout)) return false;
  const [a, b] = [kept(stored.branchHeaders), kept(mine.branchHeaders)];
  return a.length === b.length && a.every(([name, value], i) => b[i][0] === name && b[i][1] === value);
}

/** The branch headers a resume runs with (see {@link resumedOptions}) but the trace context, lower case, in name order. */
function kept(headers: Record<string, string> | undefined): [string, string][] {
  const entries: [string, string][] = [];
  for (const name in headers) {
    const lower = name.toLowerCase();
    if (!isForbiddenBranchHeader(lower) && !TRACE_CONTEXT_HEADERS.includes(lower)) entries.push([lower, headers[name]]);
  }
  return entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
}

/** A finished workflow's result, from the base64 text DTM stores. */
function resultOf(base64: string | undefined): unknown {
  if (!base64) return undefined;
  return (JSON.parse(Buffer.from(base64, 'base64').toString('utf8')) as StoredInput).v;
}

/** What gRPC metadata values carry: printable ASCII, without spaces around it. */
const GRPC_METADATA_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** A workflow's custom data (DTM's text of it, or the object a query parsed): its name and input (base64); undefined when it is none. */
function customDataOf(customData: unknown): { name?: unknown; data?: unknown } | undefined {
  let stored = customData;
  if (typeof stored === 'string') {
    try {
      stored = JSON.parse(stored);
    } catch {
      return undefined;
    }
  }
  return typeof stored === 'object' && stored !== null ? (stored as { name?: unknown; data?: unknown }) : undefined;
}

/** The input a workflow's custom data holds (see {@link customDataOf}), or `fallback` when it holds none. */
function inputOf(stored: { data?: unknown } | undefined, fallback: unknown): unknown {
  const data = stored?.data;
  return typeof data === 'string' && data !== '' ? (JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as StoredInput).v : fallback;
}

/**
 * What the resume token of a workflow signs of the branch headers DTM stored for it: the text of the
 * forwarded headers its `dtm-auth-headers` lists (undefined: none; null: a list they do not match),
 * and the tokens' issue time.
 */
function storedSigned(stored: Record<string, string>): { headers: string | undefined | null; issued: string | undefined } {
  const lower: Record<string, string> = {};
  for (const name in stored) lower[name.toLowerCase()] = stored[name];
  const issued = lower[AUTH_ISSUED_HEADER];
  const list = lower[AUTH_HEADERS_HEADER];
  if (list === undefined) return { headers: undefined, issued };
  const read = headersOfCall(list, (name) => lower[name]);
  return { headers: read.bad || read.missing !== undefined ? null : read.text, issued };
}

/** The request context of a resumed run: the resume call's trace context, and the stored forwarded headers this app passes on (`allowList`). */
function resumeHeaders(inbound: Record<string, string>, stored: Record<string, string> | undefined, allowList: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name in stored) {
    const lower = name.toLowerCase();
    if (allowList.includes(lower) && !TRACE_CONTEXT_HEADERS.includes(lower)) headers[lower] = stored[name];
  }
  for (const name of TRACE_CONTEXT_HEADERS) if (inbound[name] !== undefined) headers[name] = inbound[name];
  return headers;
}

/**
 * The options a resumed workflow runs with: those DTM stored when it was started (its protocol,
 * timeouts, retry interval, branch headers), so a resume sends what the first run sent (not a retry
 * limit, a saga option DTM never applies to a workflow, which one stored by an older version may hold).
 * The headers the module adds itself (`dtm-auth` tokens) are made anew, not copied.
 */
function resumedOptions(record: TransactionRecord): TransactionOptions {
  const stored = record.options;
  const options: TransactionOptions = { protocol: record.protocol };
  if (stored.timeoutToFail !== undefined) options.timeoutToFail = stored.timeoutToFail;
  if (stored.retryInterval !== undefined) options.retryInterval = stored.retryInterval;
  if (stored.branchTimeout !== undefined) options.branchTimeout = stored.branchTimeout;
  const headers: Record<string, string> = {};
  for (const name in stored.branchHeaders) if (!isForbiddenBranchHeader(name.toLowerCase())) headers[name] = stored.branchHeaders[name];
  if (Object.keys(headers).length > 0) options.branchHeaders = headers;
  return options;
}
