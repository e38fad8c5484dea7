import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * The module was used in a way that cannot work (a bad gid, an unknown branch name, a target of
 * the wrong protocol, a bad step index, ...): nothing was sent to DTM. The message says how to fix it.
 */
export class DtmUsageError extends DtmError {
  constructor(message: string, context: DtmErrorContext = {}) {
    super(message, context);
  }
}
