import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from './dtm-error.js';

/**
 * A two-phase message's local transaction found its barrier row already there: DTM's back-check got
 * there first and decided the message is rolled back, so the business did not run and nothing is sent.
 */
export class DtmDuplicatedError extends DtmError {
  constructor(gid: string) {
    super(MESSAGES.duplicated(gid), { gid });
  }
}
