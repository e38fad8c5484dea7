// What a branch said when it refused, out of the text DTM (or the branch's HTTP answer) carries.
import { redactUrl } from '../redact.js';

/** DTM v1.19's rollback reason after a saga action answered FAILURE: `url:<target> return failed: <answer> FAILURE` (dtmsvr/trans_status.go). */
const SAGA_FAILURE = /^url:([^\s]*) return failed: ([^]*)$/;
/** The word DTM's Go SDK appends to a FAILURE answer (`ErrorMessage2Error`). */
const FAILURE_SUFFIX = ' FAILURE';

/** A failure reason read: the branch's own message, and where it came from when DTM said so. */
export interface FailureReason {
  /** The branch's own message (`no account zed`), or the text itself when it holds none. */
  message: string;
  /** The branch target DTM named (a saga action's URL or gRPC method), when it did; a URL's credentials shown as `***@`. */
  target?: string;
}

/**
 * Reads a failure text: DTM's saga rollback reason (`url:... return failed: {...} FAILURE`), a
 * branch's FAILURE answer (`{"dtm_result":"FAILURE","message":"..."}`), or anything else (a TCC /
 * XA abort reason, `Timeout after 30 seconds`, a gRPC status message), which is kept as it is.
 */
export function readFailureReason(raw: string): FailureReason {
  const saga = SAGA_FAILURE.exec(raw);
  if (saga) {
    let answer = saga[2];
    if (answer.endsWith(FAILURE_SUFFIX)) answer = answer.slice(0, -FAILURE_SUFFIX.length);
    return { message: answerMessage(answer), target: redactUrl(saga[1]) };
  }
  return { message: answerMessage(raw) };
}

/** The branch's own message in a FAILURE answer's body: its JSON `message` (or `error`), else the text (a bare `FAILURE` stays). */
export function answerMessage(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      const body = JSON.parse(trimmed) as Record<string, unknown>;
      for (const key of ['message', 'error']) {
        const value = body?.[key];
        if (typeof value === 'string' && value !== '') return value;
        if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) return value.join('; ');
      }
      if (body && typeof body.dtm_result === 'string') return body.dtm_result;
    } catch {
      // not JSON: the text as it is
    }
  }
  return trimmed === '' ? text : trimmed;
}
