import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * Phase 2 of an XA branch (DTM's commit or rollback) found the branch neither prepared nor already
 * finished the way DTM asks: e.g. a commit of a branch that was rolled back (or lost) outside DTM;
 * or the branch was still held after a second (MySQL / MariaDB: by the connection that prepared it;
 * PostgreSQL: a rollback while its action still runs); or MariaDB acknowledged the commit or
 * rollback without applying it. It is never answered as success: the call
 * fails and DTM retries it; one that repeats needs an operator.
 */
export class DtmXaPhase2Error extends DtmError {
  /** The phase-2 op DTM asked for. */
  readonly op: 'commit' | 'rollback';

  constructor(message: string, op: 'commit' | 'rollback', context: DtmErrorContext = {}) {
    super(message, context);
    this.op = op;
  }
}
