// How DTM words the refusal of an operation because of the transaction it already stores under the
// gid (dtmsvr/api.go: "current status 'succeed', cannot sumbmit." [sic], "... cannot prepare."),
// the same text over HTTP (409) and gRPC (ABORTED). Both transports make it a DtmFailureError.
import { DtmFailureError } from '../errors/dtm-failure.error.js';

const STATUS_REFUSAL = /current status '([a-z]+)', cannot [a-z]+/;

/** When `err` is DTM's refusal of an operation because of the stored status: that status, and DTM's words. */
export function refusedForStatus(err: unknown): { status: string; detail: string } | undefined {
  const match = err instanceof DtmFailureError ? STATUS_REFUSAL.exec(err.message) : null;
  return match ? { status: match[1], detail: match[0] } : undefined;
}
