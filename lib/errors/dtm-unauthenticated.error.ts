import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * With authenticated branch calls (`lynx.dtm.branch_auth_keys`): a call that reached this app
 * (a workflow resume) was not signed by an app holding one of the keys, so nothing ran.
 */
export class DtmUnauthenticatedError extends DtmError {
  constructor(message: string, context: DtmErrorContext = {}) {
    super(message, context);
  }
}
