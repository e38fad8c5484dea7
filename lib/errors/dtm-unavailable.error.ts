import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * The DTM server (or a branch the module calls itself) could not be reached in time: a network
 * error, a timeout, or gRPC UNAVAILABLE / DEADLINE_EXCEEDED. `endpoint` names it.
 */
export class DtmUnavailableError extends DtmError {
  constructor(message: string, context: DtmErrorContext = {}) {
    super(message, context);
  }
}
