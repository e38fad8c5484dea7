import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * DTM's FAILURE result: a branch refused (HTTP 409), or DTM refused an operation. Thrown by a branch
 * handler, it tells DTM to roll the transaction back; `reason` ends up in DTM's rollback reason.
 */
export class DtmFailureError extends DtmError {
  /** Why it failed, as the branch or DTM said it. */
  readonly reason: string;

  constructor(reason = 'FAILURE', context: DtmErrorContext = {}) {
    super(reason, context);
    this.reason = reason;
  }
}
