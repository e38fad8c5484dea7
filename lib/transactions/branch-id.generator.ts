import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';

/**
 * Sub-branch ids as DTM's SDKs make them: the parent id plus a two-digit counter (`01`, `02`, ...;
 * nested under branch `01`: `0101`, `0102`, ...). At most 99 per level and 20 characters in all.
 */
export class BranchIdGenerator {
  private counter = 0;

  constructor(readonly parentId = '') {}

  /** The next sub-branch id. */
  next(): string {
    if (this.counter >= 99 || this.parentId.length >= 20) throw new DtmUsageError(MESSAGES.branchIdOverflow(this.parentId));
    this.counter += 1;
    return `${this.parentId}${String(this.counter).padStart(2, '0')}`;
  }
}
