import { parseAddress, type BranchTarget } from '../transport/branch-target.js';
import type { BranchAnswer, Payload, TransactionOptions } from '../transport/dtm.types.js';
import type { WorkflowProgress } from '../transport/dtm-transport.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { Transaction } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** Longest `custom_data` and `result` DTM's SQL stores take (varchar(1024)); `rollback_reason` too. */
export const MAX_WORKFLOW_TEXT = 1024;
/** Longest recorded step data MySQL's store takes (a BLOB). */
export const MAX_STEP_DATA_BYTES = 65_535;

const NO_TARGET: BranchTarget = { kind: 'none', value: '' };

/**
 * A workflow as DTM sees it: created (or found) with `prepareWorkflow`, its steps recorded with
 * `registerBranch` (always with `sync: "1"`: without it DTM v1.19.0 loses progress on a default
 * server), ended with `submit` (`req_extra`: status, rollback reason, result). The execution logic
 * is in workflow/; this is the transaction core's side of it.
 */
export class WorkflowTransaction extends Transaction {
  /** @internal made by the workflow engine */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'workflow', options);
  }

  /** Creates the workflow (prepared, with its name, input and resume target) or finds it; its status and recorded progress. */
  prepare(name: string, input: string, resumeTarget: string): Promise<WorkflowProgress> {
    const customData = JSON.stringify({ data: Buffer.from(input, 'utf8').toString('base64'), name });
    if (customData.length > MAX_WORKFLOW_TEXT) throw new DtmUsageError(MESSAGES.workflowInputTooLong(name, customData.length, MAX_WORKFLOW_TEXT), { gid: this.gid });
    return this.transport.prepareWorkflow(this.request({ customData, queryPrepared: resumeTarget }));
  }

  /** Records the outcome of step `branchId`'s `op` (with `sync`: DTM refuses a duplicate, and a workflow no longer prepared). */
  async record(branchId: string, op: string, status: 'succeed' | 'failed', data: string): Promise<void> {
    if (Buffer.byteLength(data) > MAX_STEP_DATA_BYTES) throw new DtmUsageError(MESSAGES.workflowStepTooLarge(branchId, Buffer.byteLength(data), MAX_STEP_DATA_BYTES), { gid: this.gid, branchId });
    await this.transport.registerBranch({ gid: this.gid, transType: 'workflow', branchId, payload: this.encode(data, NO_TARGET), fields: { op, status, sync: '1' } });
  }

  /** Ends the workflow: `succeed` with `result`, or `failed` with `reason` (cut to what DTM's stores take). */
  async finish(status: 'succeed' | 'failed', reason: string | undefined, result: string | undefined): Promise<void> {
    const extra: Record<string, string> = { status, rollback_reason: (reason ?? '').slice(0, MAX_WORKFLOW_TEXT) };
    if (result !== undefined) {
      const encoded = Buffer.from(result, 'utf8').toString('base64');
      if (encoded.length > MAX_WORKFLOW_TEXT) throw new DtmUsageError(MESSAGES.workflowResultTooLong(encoded.length, MAX_WORKFLOW_TEXT), { gid: this.gid });
      extra.result = encoded;
    }
    await this.transport.submit(this.request({ extra }));
  }

  /**
   * Calls a branch for step `branchId` (`trans_type=workflow`, `op`), over the transport of its
   * target: the app calls workflow steps itself, so an HTTP workflow can call gRPC branches too.
   */
  call(target: string, payload: Payload, branchId: string, op: string): Promise<BranchAnswer> {
    const parsed = parseAddress(target, this.gid);
    const transport = this.runtime.transport(parsed.kind === 'grpc' ? 'grpc' : 'http');
    return transport.callBranch({
      target: parsed,
      gid: this.gid,
      transType: 'workflow',
      branchId,
      op,
      payload: transport.encode(payload, parsed),
      headers: this.options.branchHeaders,
      timeoutSeconds: this.options.branchTimeout,
    });
  }
}
