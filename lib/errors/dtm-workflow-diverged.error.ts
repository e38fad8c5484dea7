import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from './dtm-error.js';

/**
 * A workflow resumed with different code: the step at a position is not the one recorded there,
 * the code ends before a recorded step (a step added, removed, renamed or reordered while
 * executions were running), or it now ends otherwise than an earlier execution began to (rolls back
 * one that began its commit callbacks, or the reverse). The execution stops before applying
 * anything; DTM keeps the workflow for a resume by code that matches.
 */
export class DtmWorkflowDivergedError extends DtmError {
  constructor(
    /** The workflow's name. */
    readonly workflow: string,
    gid: string,
    branchId: string,
    op: string,
    /** The step name recorded at that position. */
    readonly recordedStep: string,
    /** The step name the code has there now; `''` when the code now ends before that position, or ends otherwise (`endsIn`). */
    readonly currentStep: string,
    /** Set when the code now ends in this phase 2 (`op` being the other one, which an earlier execution recorded a callback of). */
    readonly endsIn?: 'commit' | 'rollback',
  ) {
    super(MESSAGES.workflowDiverged(workflow, gid, branchId, op, recordedStep, currentStep, endsIn), { gid, branchId });
  }
}
