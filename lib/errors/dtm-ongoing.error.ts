import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * DTM's ONGOING result: not finished yet, ask again later (HTTP 425). Thrown by a branch handler, it
 * makes DTM retry the branch at the transaction's fixed retry interval, without backing off.
 */
export class DtmOngoingError extends DtmError {
  constructor(message = 'ONGOING', context: DtmErrorContext = {}) {
    super(message, context);
  }
}
