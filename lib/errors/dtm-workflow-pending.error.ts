import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from './dtm-error.js';

/**
 * A workflow is not finished: this execution stopped on an error that is not a business FAILURE
 * (a branch or DTM unreachable, an ONGOING step, another execution of it running, ...). DTM keeps
 * it and calls the app back to resume it; `cause` says why this execution stopped.
 */
export class DtmWorkflowPendingError extends DtmError {
  constructor(
    /** The workflow's name. */
    readonly workflow: string,
    gid: string,
    cause?: unknown,
  ) {
    super(MESSAGES.workflowPending(workflow, gid, cause instanceof Error ? cause.message : cause === undefined ? 'another execution of it is running' : String(cause)), { gid, cause });
  }
}
