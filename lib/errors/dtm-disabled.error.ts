import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from './dtm-error.js';

/** The client was used while `lynx.dtm.enabled` is false. */
export class DtmDisabledError extends DtmError {
  constructor(operation: string) {
    super(MESSAGES.disabled(operation));
  }
}
