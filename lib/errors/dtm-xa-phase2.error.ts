import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * Phase 2 of an XA branch (DTM's commit or rollback) found the branch neither prepared nor already
 * finished the way DTM asks: e.g. a commit of a branch that was rolled back (or lost) outside DTM.
 * It is never answered as success: the call fails, DTM retries it, and an operator must look.
 */
export class DtmXaPhase2Error extends DtmError {
  /** The phase-2 op DTM asked for. */
  readonly op: 'commit' | 'rollback';

  constructor(message: string, op: 'commit' | 'rollback', context: DtmErrorContext = {}) {
    super(message, context);
    this.op = op;
  }
}
