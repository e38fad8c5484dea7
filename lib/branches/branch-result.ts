import { BadRequestException, HttpException } from '@nestjs/common';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { dtmResultOfRpcException } from './grpc/grpc-branch.transport.js';
import { answerMessage } from '../diagnostics/failure-reason.js';
import { MESSAGES } from '../dtm.messages.js';
import type { BranchKind } from '../transport/dtm.types.js';

/** Branch kinds whose FAILURE cannot roll anything back: DTM only retries them (and an XA branch's phase 2, `commit` / `rollback`). */
export const FAILURE_CANNOT_ROLL_BACK: ReadonlySet<BranchKind> = new Set(['saga-compensate', 'tcc-confirm', 'tcc-cancel', 'msg']);

/**
 * What DTM reads the answer to a branch handler's error `exception` as, on either transport (see
 * the transports' `answer`): FAILURE for `DtmFailureError`, an `HttpException` with status 409 and an
 * `RpcException` with code ABORTED; ONGOING for `DtmOngoingError`, status 425 and FAILED_PRECONDITION;
 * undefined for anything else (an error DTM retries).
 */
export function dtmResultOfError(exception: unknown): 'FAILURE' | 'ONGOING' | undefined {
  if (exception instanceof DtmFailureError) return 'FAILURE';
  if (exception instanceof DtmOngoingError) return 'ONGOING';
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    return status === 409 ? 'FAILURE' : status === 425 ? 'ONGOING' : undefined;
  }
  return dtmResultOfRpcException(exception);
}

/**
 * What DTM v1.19 reads an HTTP branch's 200 answer with body `value` as (`dtmcli.HTTPResp2DtmError`:
 * ONGOING, then FAILURE, anywhere in the body), for the bodies that speak DTM's result protocol: a
 * string, or an object with a `dtm_result` field (DTM's protocol before v1.10, which v1.19 still
 * honours); undefined for any other body, which is not read (no work on a call's success path).
 */
export function dtmResultOfBody(value: unknown): { result: 'FAILURE' | 'ONGOING'; text: string } | undefined {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'object' && value !== null && 'dtm_result' in value) text = JSON.stringify(value);
  else return undefined;
  const result = text.includes('ONGOING') ? 'ONGOING' : text.includes('FAILURE') ? 'FAILURE' : undefined;
  return result && { result, text };
}

/**
 * The error a handler that answered `body` (see {@link dtmResultOfBody}) stands for: a
 * `DtmFailureError` (the body's message as reason) or a `DtmOngoingError`, as if the handler threw it.
 */
export function errorOfResultBody(where: string, body: { result: 'FAILURE' | 'ONGOING'; text: string }): DtmFailureError | DtmOngoingError {
  const own = answerMessage(body.text);
  const message = own === body.text || own === body.result ? MESSAGES.resultBody(where, body.result, body.text) : own;
  return body.result === 'FAILURE' ? new DtmFailureError(message) : new DtmOngoingError(message);
}

/**
 * Whether DTM sends branch call `kind` / `op` with no payload (a message's back-check, an XA phase 2):
 * a 400 from it (a pipe that found the empty request invalid) says nothing of the transaction and is
 * answered as an error DTM retries; any other branch's 400 is answered FAILURE (see `DtmBranchExceptionFilter`).
 */
export function isEmptyRequestCall(kind: BranchKind, op: string): boolean {
  return kind === 'msg-query-prepared' || (kind === 'xa' && op !== 'action');
}

/**
 * Whether `exception` is a validation's refusal of the payload: a 400, or a 422 (ValidationPipe's
 * `errorHttpStatusCode: HttpStatus.UNPROCESSABLE_ENTITY`, a common choice), which no retry changes.
 */
export function isPayloadRefusal(exception: unknown): exception is HttpException {
  return exception instanceof BadRequestException || (exception instanceof HttpException && exception.getStatus() === 422);
}

/**
 * What DTM reads the error a branch handler of `kind` threw on `op` as, once the module's exception
 * filter answered it: {@link dtmResultOfError}, and a payload refusal (a 400 or 422, see
 * {@link isPayloadRefusal}) is FAILURE unless the call came empty ({@link isEmptyRequestCall}).
 */
export function dtmResultOfAnsweredError(exception: unknown, kind: BranchKind, op: string): 'FAILURE' | 'ONGOING' | undefined {
  if (isPayloadRefusal(exception)) return isEmptyRequestCall(kind, op) ? undefined : 'FAILURE';
  return dtmResultOfError(exception);
}
