import { truncate } from '../dtm.messages.js';
import { redactText } from '../redact.js';
import { ANSWERED_TEXT_MAX } from '../transport/dtm-limits.js';
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

  /**
   * The message is `reason`, cut between words within {@link ANSWERED_TEXT_MAX} characters past that
   * (a note saying so): another service's FAILURE answer may be as long as `max_answer_bytes`, which
   * a log line of the message (and its stack) should not repeat; `reason` keeps it whole.
   */
  constructor(reason = 'FAILURE', context: DtmErrorContext & { raw?: string } = {}) {
    super(reason.length <= ANSWERED_TEXT_MAX ? reason : `${truncate(reason, ANSWERED_TEXT_MAX)} [cut: its reason has all ${reason.length} characters]`, context);
    this.reason = reason;
    this.raw = context.raw === undefined ? reason : redactText(context.raw);
  }
}
