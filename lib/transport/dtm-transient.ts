// Which errors of a call to DTM say "not now" rather than "no": what a wait for a transaction's
// outcome rides out (DTM restarting, a network error, a 502/503/504 of a proxy in front of DTM),
// and which of them leave open whether a request reached DTM.
import { DtmServerError } from '../errors/dtm-server.error.js';
import { DtmOutcomeUnknownError } from '../errors/dtm-outcome-unknown.error.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { definiteServerRefusal } from './dtm-refusal.js';

/** Causes that mean the request never left this process (no connection, no address): DTM cannot have it. */
export const NOT_SENT = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EADDRNOTAVAIL/;

/**
 * gRPC codes of DTM's answers that say "DTM may have acted, the outcome is not known", as an HTTP
 * 5xx does: UNKNOWN (2), how DTM's gRPC API answers any plain Go error (client/dtmgrpc/type.go
 * DtmError2GrpcError passes it through: its store failing, a submit with waitResult whose first
 * round met a branch's retryable error, after DTM stored the transaction `submitted`), and INTERNAL
 * (13: a gRPC branch's plain error passed through the same way, or the call broken off mid-stream).
 * The other codes stay definite: ABORTED and FAILED_PRECONDITION are DTM's FAILURE and ONGOING,
 * UNIMPLEMENTED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED ... are grpc-go's refusals before DTM's handler ran.
 */
const GRPC_MAY_HAVE_ACTED: ReadonlySet<number> = new Set([2, 13]);

/** DTM's gRPC answers to a submit with waitResult that carry a gRPC branch's own status (see {@link markBranchStatus}). */
const BRANCH_STATUS = new WeakSet<object>();

/**
 * Marks `err`, DTM's gRPC answer to a submit with waitResult, as possibly a gRPC branch's status
 * DTM passed through with its code (dtmsvr/trans_status.go wraps the branch's error with `%w`, and
 * grpc-go keeps the code of a wrapped status): DTM stored the transaction `submitted` and retries
 * the branch, whatever the code (a branch answering INVALID_ARGUMENT or UNIMPLEMENTED included).
 */
export function markBranchStatus(err: object): void {
  BRANCH_STATUS.add(err);
}

/**
 * Whether `err` (from a call to DTM) may pass if the call is made again, DTM possibly having acted
 * on it: unreachable, or a 5xx answer (over gRPC: UNKNOWN or INTERNAL, {@link GRPC_MAY_HAVE_ACTED},
 * or any code of a branch passed through by a submit with waitResult, {@link markBranchStatus})
 * other than DTM's definite refusals (a topic nobody subscribed, a value too long for its SQL
 * store: {@link definiteServerRefusal}), which DTM answers the same each time, holding nothing of the call.
 */
export function isTransientDtmError(err: unknown): boolean {
  if (err instanceof DtmUnavailableError) return true;
  if (!(err instanceof DtmServerError) || definiteServerRefusal(err.body)) return false;
  const status = err.status ?? 0;
  return err.protocol === 'http' ? status >= 500 : GRPC_MAY_HAVE_ACTED.has(status) || BRANCH_STATUS.has(err);
}

/**
 * Whether a request that failed with `err` may still have reached DTM (and been acted on): a
 * transient error other than one where nothing was sent (connection refused, unknown host, or the
 * deadline passed before the connection was made: `connected: false` on the cause, which the HTTP
 * transport sets when the socket never connected and the gRPC one when grpc-js still waited for a
 * connection).
 */
export function mayHaveReachedDtm(err: unknown): boolean {
  if (!isTransientDtmError(err)) return false;
  const cause = (err as { cause?: { code?: unknown; connected?: unknown } }).cause;
  if (cause?.connected === false) return false;
  const code = cause?.code;
  return !NOT_SENT.test(`${(err as Error).message} ${typeof code === 'string' ? code : ''}`);
}

/** The errors that are DTM's refusal of a call the HTTP transport sent again after a reset of its kept-alive connection (see {@link wasResent}). */
const RESENT = new WeakSet<object>();

/** Marks `err` as DTM's answer to a call sent a second time: the first may have reached DTM, and DTM's refusal may be of the state the first one made. */
export function markResent(err: object): void {
  RESENT.add(err);
}

/**
 * Whether `err` is DTM's refusal of a call the HTTP transport sent a second time after the
 * connection of the first was reset before an answer (Node's keep-alive race; or a proxy or DTM
 * dying after DTM acted on the first): a refusal "current status 'succeed', cannot sumbmit" is then
 * possibly of the first call's own doing.
 */
export function wasResent(err: unknown): boolean {
  return typeof err === 'object' && err !== null && RESENT.has(err);
}

/**
 * Whether `err`, the error of a submit of a transaction DTM holds prepared (a message this object
 * prepared, a TCC or XA whose body ran), leaves it so: a submit that may not have got through
 * (transient), and any other answer that is not DTM's decision on it ({@link DtmServerError}: a
 * gateway's 4xx in front of DTM, a gRPC code of an interceptor, DTM's "topic not found" when a
 * message's topic lost its subscribers since the prepare), none of which changes what DTM holds. Not
 * DTM's FAILURE or ONGOING answer (the transaction's status decided it) nor a usage error.
 */
export function leftPrepared(err: unknown): boolean {
  return err instanceof DtmServerError || isTransientDtmError(err);
}

/**
 * `err` of a submit of transaction `gid`, which DTM holds prepared; when the error leaves it so
 * ({@link leftPrepared}: a gateway's 4xx, say), `DtmOutcomeUnknownError` (`prepared`) instead, never
 * an error that reads as "not sent".
 */
export function stillPreparedError(gid: string, err: unknown): unknown {
  if (err instanceof DtmOutcomeUnknownError || !leftPrepared(err)) return err;
  const undecided = new DtmOutcomeUnknownError(MESSAGES.submitMaybeLost(gid, (err as Error).message), gid, 'prepared', { cause: err });
  UNDECIDED.add(undecided);
  return undecided;
}

/** The errors {@link stillPreparedError} made (see {@link isUndecidedSubmit}). */
const UNDECIDED = new WeakSet<object>();

/** Whether `err` is {@link stillPreparedError}'s: a submit DTM did not decide, DTM holding the transaction prepared; never a wait's error. */
export function isUndecidedSubmit(err: unknown): boolean {
  return typeof err === 'object' && err !== null && UNDECIDED.has(err);
}
