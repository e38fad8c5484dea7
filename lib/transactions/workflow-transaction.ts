import { parseTarget, type BranchTarget } from '../transport/branch-target.js';
import type { BranchAnswer, Payload, TransactionOptions } from '../transport/dtm.types.js';
import type { EncodedPayload, WorkflowProgress } from '../transport/dtm-transport.js';
import { MESSAGES } from '../dtm.messages.js';
import { cutToStore, DTM_TEXT_MAX } from '../transport/dtm-limits.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmGidInUseError } from '../errors/dtm-gid-in-use.error.js';
import { Transaction } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** Longest `custom_data` and `result` DTM's SQL stores take (varchar(1024)). */
export const MAX_WORKFLOW_TEXT = DTM_TEXT_MAX;
/** Longest recorded step data MySQL's store takes (a BLOB). */
export const MAX_STEP_DATA_BYTES = 65_535;

const NO_TARGET: BranchTarget = { kind: 'none', value: '' };

/** The branch id of DTM's resume call. */
export const WORKFLOW_RESUME_BRANCH = '00';

/** What a resume token names as its target: the module's resume endpoint (one per transport, fixed). */
export const RESUME_AUTH_TARGET = 'workflow-resume';

/**
 * A workflow as DTM sees it: created (or found) with `prepareWorkflow`, its steps recorded with
 * `registerBranch` (always with `sync: "1"`: without it DTM v1.19.0 loses progress on a default
 * server), ended with `submit` (`req_extra`: status, rollback reason, result). The execution logic
 * is in workflow/; this is the transaction core's side of it.
 */
export class WorkflowTransaction extends Transaction {
  /** The workflow's name and stored input, once prepared (what DTM's resume call is signed for). */
  private resume?: { name: string; input: string };

  /** @internal made by the workflow engine */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'workflow', options);
  }

  /**
   * @internal Runs this execution of the workflow (`run`) observed, with its span active: `succeed`,
   * `failed` (a `DtmFailureError`: rolled back), or `error` (the workflow is left to DTM, a call
   * failed, or DTM holds another transaction under the gid: `DtmGidInUseError`, nothing rolled back).
   */
  async observed<T>(run: () => Promise<T>): Promise<T> {
    this.observeStart();
    let value: T;
    try {
      value = await this.withinObservation(run, undefined);
    } catch (err) {
      this.observeEnd(err instanceof DtmFailureError && !(err instanceof DtmGidInUseError) ? 'failed' : 'error', err);
      throw err;
    }
    this.observeEnd('succeed');
    return value;
  }

  /**
   * @internal Goes on with the execution `from` observes (a re-attach run again with the options DTM
   * stored): its span, start and end are this one's, so the execution is reported once.
   */
  continues(from: WorkflowTransaction): void {
    this.takeObservation(from);
  }

  /**
   * @internal An execution of a workflow DTM holds: its tokens sign the issue time of those DTM
   * stored for it (`issued`, its `dtm-auth-issued`), as its record's creation time is checked against
   * it (`branch_auth_issue_window`): signed now, a run resumed later than the window would have its
   * own step calls refused by `branch_auth_check_actions`.
   */
  runsAsIssued(issued: string | undefined): void {
    this.signAsIssued(issued);
  }

  /** Creates the workflow (prepared, with its name, input and resume target) or finds it; its status and recorded progress. */
  prepare(name: string, input: string, resumeTarget: string): Promise<WorkflowProgress> {
    const customData = JSON.stringify({ data: Buffer.from(input, 'utf8').toString('base64'), name });
    if (customData.length > MAX_WORKFLOW_TEXT) throw new DtmUsageError(MESSAGES.workflowInputTooLong(name, customData.length, MAX_WORKFLOW_TEXT), { gid: this.gid });
    this.resume = { name, input };
    return this.transport.prepareWorkflow(this.request({ customData, queryPrepared: resumeTarget }));
  }

  /** DTM's resume call: branch `00`, the workflow's name as op, the stored input as what it names. */
  protected override signDtmCalls(sign: (op: string, branchId: string, target: string, payload: EncodedPayload | undefined) => void): void {
    if (this.resume) sign(this.resume.name, WORKFLOW_RESUME_BRANCH, RESUME_AUTH_TARGET, this.resume.input);
  }

  /** Records the outcome of step `branchId`'s `op` (with `sync`: DTM refuses a duplicate, and a workflow no longer prepared). */
  async record(branchId: string, op: string, status: 'succeed' | 'failed', data: string): Promise<void> {
    if (Buffer.byteLength(data) > MAX_STEP_DATA_BYTES) throw new DtmUsageError(MESSAGES.workflowStepTooLarge(branchId, Buffer.byteLength(data), MAX_STEP_DATA_BYTES), { gid: this.gid, branchId });
    try {
      await this.transport.registerBranch({ gid: this.gid, transType: 'workflow', branchId, payload: this.encode(data, NO_TARGET), fields: { op, status, sync: '1' } });
    } catch (err) {
      // DTM's FAILURE here is its refusal of the record, not the step's business FAILURE: read as one,
      // it would run the rollback callbacks of a workflow another execution may have ended in success
      if (err instanceof DtmFailureError) throw new Error(MESSAGES.workflowRecordRefused(branchId, op, err.message), { cause: err });
      throw err;
    }
  }

  /** `result` (the workflow's JSON) as DTM stores it (base64); `DtmUsageError` when DTM's SQL stores cannot keep it. */
  storedResult(name: string, result: string): string {
    const encoded = Buffer.from(result, 'utf8').toString('base64');
    if (encoded.length > MAX_WORKFLOW_TEXT) throw new DtmUsageError(MESSAGES.workflowResultTooLong(name, encoded.length, MAX_WORKFLOW_TEXT), { gid: this.gid });
    return encoded;
  }

  /** Ends the workflow: `succeed` with `result` (as {@link storedResult} gives it), or `failed` with `reason` (cut at a character to what DTM's stores take). */
  async finish(status: 'succeed' | 'failed', reason: string | undefined, result: string | undefined): Promise<void> {
    const extra: Record<string, string> = { status, rollback_reason: cutToStore(reason ?? '') };
    if (result !== undefined) extra.result = result;
    await this.transport.submit(this.request({ extra }));
  }

  /**
   * Calls a branch for step `branchId` (`trans_type=workflow`, `op`), over the transport of its
   * target: the app calls workflow steps itself, so an HTTP workflow can call gRPC branches too.
   */
  call(target: string, payload: Payload, branchId: string, op: string): Promise<BranchAnswer> {
    const parsed = parseTarget(target, this.gid);
    if (parsed.kind === 'name') throw new DtmUsageError(MESSAGES.workflowStepBranchName(branchId, op, parsed.name), { gid: this.gid, branchId });
    // a saga's '' (nothing to call) and a message's topic mean nothing to a call the app makes itself
    if (parsed.kind !== 'http' && parsed.kind !== 'grpc') throw new DtmUsageError(MESSAGES.workflowStepTarget(branchId, op, target), { gid: this.gid, branchId });
    const transport = this.runtime.transport(parsed.kind === 'grpc' ? 'grpc' : 'http');
    const encoded = transport.encode(payload, parsed);
    const headers = this.callHeaders(parsed, encoded, branchId, op);
    // a gRPC workflow's headers are checked as gRPC metadata only: an HTTP step's call carries them as HTTP headers, which a Node.js branch refuses past 16 KiB (431)
    if (parsed.kind === 'http' && this.protocol === 'grpc') transport.checkTransaction(this.gid, { ...this.options, branchHeaders: headers });
    return transport.callBranch({
      target: parsed,
      gid: this.gid,
      transType: 'workflow',
      branchId,
      op,
      payload: encoded,
      headers,
      timeoutSeconds: this.options.branchTimeout,
    });
  }
}
