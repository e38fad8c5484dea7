import { types } from 'node:util';
import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from './dtm-error.js';
import { textOf } from './text-of.js';

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
    /** Why this execution stopped (what it threw, even `undefined`); none: another execution of it is running. */
    ...cause: [] | [unknown]
  ) {
    super(MESSAGES.workflowPending(workflow, gid, cause.length === 0 ? 'another execution of it is running' : whyStopped(cause[0])), cause.length === 0 ? { gid } : { gid, cause: cause[0] });
  }
}

/** What stopped an execution, as its message says: an Error's message, or the value thrown instead of one. */
function whyStopped(cause: unknown): string {
  // an Error of another realm (a vm context, a test runner's sandbox) is an Error too
  if (cause instanceof Error || types.isNativeError(cause)) return cause.message;
  return `it threw ${typeof cause === 'string' ? JSON.stringify(cause) : textOf(cause)}, no Error`;
}
