import type { DtmErrorContext } from './dtm-error.js';
import { DtmOngoingError } from './dtm-ongoing.error.js';
import type { UnfinishedBranch } from '../diagnostics/unfinished.js';

/**
 * DTM has the transaction (it accepted its prepare or submit, or answered a query about it), but
 * its final outcome is not known yet: the wait ended first, or DTM could not be asked (restarting,
 * unreachable). DTM goes on with it. Do not start it again under a new gid (its branches could run
 * twice): wait again with `waitForFinal(gid)`, or query it later. With `lastStatus` `absent`, DTM
 * held no record after this app's submit, yet may have run its branches (DTM v1.19 does when storing
 * fails): submit the same saga or message again, under the same gid; after a prepare DTM took (a
 * message's, a TCC's or XA's), DTM lost its record or the query reached another DTM: the message
 * says what to do (a TCC / XA must not be submitted again). A `DtmOngoingError`, so code that
 * handles "not finished yet" handles this too.
 */
export class DtmOutcomeUnknownError extends DtmOngoingError {
  /** The last status DTM reported for the gid (`prepared`, `submitted`, `aborting` ...), `absent` if it held none after this app's submit (or after a prepare it took), or `unknown` if it could not be asked. */
  readonly lastStatus: string;
  /** The branches DTM was still calling when the wait ended, each with the cause the module found (empty when DTM could not be asked). */
  readonly unfinished: readonly UnfinishedBranch[];

  constructor(message: string, gid: string, lastStatus: string, context: Omit<DtmErrorContext, 'gid'> = {}, unfinished: readonly UnfinishedBranch[] = []) {
    super(message, { ...context, gid });
    this.lastStatus = lastStatus;
    this.unfinished = unfinished;
  }
}
