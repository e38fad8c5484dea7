import { MESSAGES } from '../dtm.messages.js';
import type { DtmErrorContext } from './dtm-error.js';
import { DtmFailureError } from './dtm-failure.error.js';

/**
 * DTM refused to prepare or submit a transaction because it already holds one with that gid, in a
 * status that does not allow it (a gid used before). Nothing of the refused operation ran: its
 * branches were not called, and the other transaction's outcome is not this one's. Use a new gid.
 */
export class DtmGidInUseError extends DtmFailureError {
  /** The status of the transaction DTM holds under the gid. */
  readonly currentStatus: string;

  constructor(operation: string, gid: string, currentStatus: string, detail: string, context: DtmErrorContext = {}) {
    super(MESSAGES.gidInUse(operation, gid, currentStatus, detail), { ...context, gid });
    this.currentStatus = currentStatus;
  }
}
