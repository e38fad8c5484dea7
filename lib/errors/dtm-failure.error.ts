import { redactText } from '../redact.js';
import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * DTM's FAILURE result: a branch refused (HTTP 409), or DTM refused an operation. Thrown by a branch
 * handler, it tells DTM to roll the transaction back; `reason` ends up in DTM's rollback reason.
 */
export class DtmFailureError extends DtmError {
  /** Why it failed, as the branch or DTM said it: the branch's own message, not the body it travelled in. */
  readonly reason: string;
  /** The text as received (a branch's answer body, DTM's rollback reason, which names a saga step's URL), with URLs' credentials shown as `***@`, when it was more than {@link reason}; else `reason`. */
  readonly raw: string;

  constructor(reason = 'FAILURE', context: DtmErrorContext & { raw?: string } = {}) {
    super(reason, context);
    this.reason = reason;
    this.raw = context.raw === undefined ? reason : redactText(context.raw);
  }
}
