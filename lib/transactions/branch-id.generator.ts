import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';
import { splitTccBranchId } from '../auth/branch-auth.js';

/**
 * Sub-branch ids as DTM's SDKs make them: the parent id plus a two-digit counter (`01`, `02`, ...;
 * nested under branch `01`: `0101`, `0102`, ...). At most 99 per level and 20 characters in all.
 */
export class BranchIdGenerator {
  private counter = 0;

  /** `parentId` without the token an authenticated TCC branch id carries (`01-<token>`: sub-branches are `0101`, ...). */
  constructor(parentId = '') {
    this.parentId = splitTccBranchId(parentId).prefix;
  }

  readonly parentId: string;

  /** The next sub-branch id. */
  next(): string {
    if (this.counter >= 99 || this.parentId.length >= 20) throw new DtmUsageError(MESSAGES.branchIdOverflow(this.parentId));
    this.counter += 1;
    return `${this.parentId}${String(this.counter).padStart(2, '0')}`;
  }
}
