import { MESSAGES } from '../dtm.messages.js';
import type { DtmErrorContext } from './dtm-error.js';
import { DtmFailureError } from './dtm-failure.error.js';

/**
 * DTM already holds another transaction under the gid: it refused the prepare or submit (a status
 * that does not allow it: a gid used before), or the module found DTM's record to be another's
 * (a TCC / XA prepare DTM took for one it held prepared, a message's prepare, a saga's or message's
 * `submitAndWait()`, `executeWorkflow()`: another type, branches, gid case or workflow name).
 * Nothing of the refused operation ran: its branches were not called, its body or local
 * transaction did not run, and the other transaction's outcome is not this one's. Use a new gid.
 */
export class DtmGidInUseError extends DtmFailureError {
  /** The status of the transaction DTM holds under the gid. */
  readonly currentStatus: string;

  constructor(operation: string, gid: string, currentStatus: string, detail: string, context: DtmErrorContext = {}) {
    super(MESSAGES.gidInUse(operation, gid, currentStatus, detail), { ...context, gid });
    this.currentStatus = currentStatus;
  }
}
