import { Catch, HttpException, Injectable, InternalServerErrorException, Logger, Optional, UnauthorizedException, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { currentPassThroughHeaders } from '../context/dtm-context.js';
import { MESSAGES, truncate } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { branchMetadataOf } from './branch-metadata.accessor.js';
import { branchTransportOf } from './branch-transports.js';
import type { BranchCarrier, BranchTransport } from './branch-transport.js';
import { ANSWERED_TEXT_MAX, cutToFit, DTM_TEXT_MAX } from '../transport/dtm-limits.js';
import { branchCallOf, isRefusal, type BranchCallState } from './branch-call.js';
import { answeredBy, observeUnhandledCall, refusalAnswer } from './branch-handler.binding.js';
import { handlerName, shownTransType } from './branch.types.js';
import { shownBranchId } from '../auth/branch-auth.js';
import { recordBranchFailure, recordBranchRefusal, recordedBranchFailure, type RecordedBranchFailure } from '../diagnostics/branch-failures.js';
import { xaModuleStepOf } from '../xa/xa-local-transaction.js';
import { GRPC_CODE, grpcCodeOfHttpException, rpcExceptionCode, rpcExceptionDetails } from './grpc/grpc-branch.transport.js';
import { dtmResultOfError, FAILURE_CANNOT_ROLL_BACK, isEmptyRequestCall, isPayloadRefusal } from './branch-result.js';
import { escapeControls, shownCallerValue } from '../redact.js';
import { messageOf, textOf } from '../errors/text-of.js';

/**
 * DTM's branch protocol in one place, for decorated handlers, on the transport the call came in
 * on (see `BranchTransport.answer`: HTTP 409 / 425, gRPC ABORTED / FAILED_PRECONDITION). Warns,
 * naming the handler, when a handler whose FAILURE cannot roll anything back throws one (a
 * `DtmFailureError`, an HttpException 409, an RpcException ABORTED); records (for the diagnosis)
 * and logs any error DTM retries with the handler, gid, branch id and op of the call (a call the
 * module refused before its handler ran is reported; only a refused token is kept, apart).
 */
@Catch()
@Injectable()
export class DtmBranchExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('DtmBranch');

  constructor(@Optional() private readonly adapterHost?: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): unknown {
    const transport = branchTransportOf(host);
    if (!transport) throw exception;
    const carrier = transport.carrier(host);
    const call = branchCallOf(carrier);
    if (call && isRefusal(exception)) {
      // the module refused the call before its handler ran (see `refusal`): reported as refused, answered as it is.
      // A refused token is kept for the diagnosis (a proxy that rewrites DTM's calls refuses every one), apart from
      // handler failures: anyone who reaches the app can make such calls by the thousand, and pushes out only those
      observeUnhandledCall(call, carrier, exception, refusalAnswer(exception, transport.protocol));
      if (exception instanceof UnauthorizedException) {
        const info = transport.branchInfo(carrier, {});
        if (info) recordBranchRefusal(info.gid, info.branchId, info.op, failureOf(handlerName(call.context), exception, transport.protocol));
      }
    } else if (call) {
      // a call answered before its handler ran (a pipe, the guard's schema check) is a branch call the hooks, spans and metrics report too
      observeUnhandledCall(call, carrier, exception);
      const info = transport.branchInfo(transport.carrier(call.context), currentPassThroughHeaders());
      // as the log lines show the call: an authenticated TCC branch id without its token, a made-up trans_type as `other`, and
      // a gid or branch id that breaks the key rule (an undo call's: the guard lets it on, to be answered without its handler, and
      // the app's pipes run first) quoted, so that CR / LF or ANSI escapes in them forge no line
      const shown = info && { ...info, gid: shownCallerValue(info.gid), branchId: shownCallerValue(shownBranchId(info.branchId)), op: shownCallerValue(info.op), transType: shownTransType(info.transType) };
      const where = handlerName(call.context);
      const branch = branchMetadataOf(call.context.getHandler());
      /** The message of a pipe's 400 that was answered FAILURE (or an interceptor's, after the handler ran), its status, and who answered it. */
      let refusedByPipe: string | undefined;
      let refusedStatus = 400;
      let refusedBy: ReturnType<typeof answeredBy> = 'before';
      if (isPayloadRefusal(exception)) {
        if (branch && shown && isEmptyRequestCall(branch.kind, shown.op)) {
          // a call DTM sends empty (a back-check, an XA phase 2) refused with 400 / 422: a pipe found the empty
          // request invalid, which says nothing of the transaction: an error DTM retries, never FAILURE
          this.logger.error(MESSAGES.emptyRequestRefused(where, shown, httpExceptionMessage(exception)));
          exception = new InternalServerErrorException(MESSAGES.emptyRequestAnswer(where), { cause: exception });
        } else {
          // a 400 / 422 after the guard accepted the call: the app's validation (a pipe) refused the payload,
          // which no retry changes: FAILURE with its message, so DTM rolls back instead of retrying. Once the handler ran,
          // the payload passed the pipes: the handler's own refusal (said as a pipe's, when known), or an interceptor's
          // of its answer, which DTM's rollback reason says (the action ran: its compensation undoes it)
          refusedByPipe = httpExceptionMessage(exception);
          refusedStatus = exception.getStatus();
          refusedBy = answeredBy(call, exception);
          const reason = refusedBy === 'before' || refusedBy === 'handler' ? MESSAGES.invalidPayload(where, refusedByPipe) : MESSAGES.answerRefusedAfterRun(where, refusedStatus, refusedByPipe, refusedBy === 'after');
          exception = new DtmFailureError(reason, { cause: exception });
        }
      }
      // an HttpException with status 409 or 425 and an RpcException with code ABORTED or FAILED_PRECONDITION are DTM's
      // FAILURE or ONGOING, as the module's own errors are: not the handler's error (nothing recorded, nothing logged)
      const result = dtmResultOfError(exception);
      if (result === 'FAILURE') {
        if (branch && info && shown && refusedByPipe !== undefined && (branch.kind === 'saga-compensate' || branch.kind === 'tcc-cancel')) {
          // an undo whose payload a pipe refused never runs, whatever DTM retries: said once per transaction and branch, at
          // error level, and kept for the diagnosis of a transaction that does not finish in time
          // ... unless its handler ran (it refused the call itself, or an interceptor of the app refused its answer after it): said so, not as a pipe's refusal
          const message =
            refusedBy === 'before' ? MESSAGES.pipeRefusedUndo(where, branch.kind, shown, refusedByPipe) : MESSAGES.interceptorRefusedUndo(where, branch.kind, shown, refusedStatus, refusedByPipe, refusedBy);
          // a retry of DTM's finds the same refusal recorded (as far as the bounded record goes)
          if (recordedBranchFailure(info.gid, info.branchId, info.op)?.message !== message) this.logger.error(message);
          else this.logger.debug(MESSAGES.pipeRefusedUndoAgain(where, shown, refusedBy));
          keepFailure(call, info, { handler: where, status: transport.protocol === 'grpc' ? GRPC_CODE.ABORTED : 409, message });
        } else if (branch && shown && (FAILURE_CANNOT_ROLL_BACK.has(branch.kind) || (branch.kind === 'xa' && shown.op !== 'action'))) {
          this.logger.warn(
            refusedByPipe !== undefined
              ? MESSAGES.pipeFailureCannotRollBack(where, branch.kind, shown, refusedByPipe, refusedBy)
              : MESSAGES.failureCannotRollBack(where, branch.kind, shown, failureName(exception)),
          );
        }
      } else if (result !== 'ONGOING') {
        if (info) keepFailure(call, info, failureOf(where, exception, transport.protocol));
        if (!(exception instanceof HttpException)) this.logger.error(MESSAGES.branchError(where, transport.protocol, shown, shownError(exception)));
      }
    } else if (!(exception instanceof HttpException) && !(exception instanceof DtmFailureError) && !(exception instanceof DtmOngoingError)) {
      // the call failed before the module's guard ran (a request-scoped controller or provider that could not be made for it, a
      // guard of the app ahead of the module's): an error DTM retries, logged and kept for the diagnosis with the call's keys,
      // apart from handler failures as a refused token is: nothing of the call was checked, so anyone who reaches the app can
      // make such calls by the thousand (while the provider fails), and they push out only those
      const info = dtmResultOfError(exception) === undefined ? transport.branchInfo(carrier, {}) : undefined;
      if (!info) this.logger.error(shownError(exception));
      else {
        const where = MESSAGES.beforeBranchHandler(transport.path(carrier));
        // nothing of the call was checked: its op too as the caller sent it (of any length), quoted and cut when not plain
        const shown = { ...info, gid: shownCallerValue(info.gid), branchId: shownCallerValue(shownBranchId(info.branchId)), op: shownCallerValue(info.op), transType: shownTransType(info.transType) };
        recordBranchRefusal(info.gid, info.branchId, info.op, failureOf(where, exception, transport.protocol));
        this.logger.error(MESSAGES.branchError(where, transport.protocol, shown, shownError(exception)));
      }
    }
    return transport.answer(fittedFailure(exception, transport, carrier), host, this.adapterHost);
  }
}

/**
 * Keeps the failure of `call` for the diagnosis: among handler failures when the call was checked,
 * else among refusals (which push out only each other): a call whose gid or branch id breaks the
 * key rule, or whose trans_type DTM never sends (an undo op's, answered without its handler and, with `branch_auth_keys`, without a
 * token check; never one of a transaction this module started), and with `branch_auth_keys` one
 * whose token was not verified (the guard failed before it could say). Anyone who reaches the app
 * can send those by the thousand, with made-up gids.
 */
function keepFailure(call: BranchCallState, info: { gid: string; branchId: string; op: string }, failure: Omit<RecordedBranchFailure, 'at'>): void {
  const unchecked = call.skip !== undefined || (call.runtime?.config.branchAuthKeys !== undefined && call.verified === undefined);
  (unchecked ? recordBranchRefusal : recordBranchFailure)(info.gid, info.branchId, info.op, failure);
}

/** What DTM v1.19 adds around a saga action's FAILURE answer in its rollback reason: `url:<url> return failed: <answer> FAILURE`. */
const SAGA_REASON_FRAME = 'url: return failed:  FAILURE'.length;

/** Room kept in a saga action's FAILURE answer for what the call's URL may not show of DTM's (a proxy's host or path prefix; a gRPC target's host, which the call does not carry). */
const SAGA_URL_SLACK = 100;

/** The least of a saga action's FAILURE reason kept, whatever the length of its URL. */
const MIN_FAILURE_REASON = 64;

/**
 * `exception`, or, for a saga action's FAILURE (a `DtmFailureError`, or an app's own HttpException
 * 409 / RpcException ABORTED) whose answer would make DTM's rollback reason longer than its SQL stores
 * keep (varchar(1024): DTM then fails to store the rollback, and rolls the saga back only a retry
 * interval later, its reason "fail message lost"), a `DtmFailureError` with the reason (the app's
 * exception's message) cut to fit, ending in `…`; for any other op's `DtmFailureError` whose reason
 * passes {@link ANSWERED_TEXT_MAX} (a TCC Try's, an XA action's, a workflow step's: over gRPC the
 * answer would never arrive, over HTTP it may pass the caller's max_answer_bytes), one with the
 * reason cut to that (the transports cut the app's own exceptions to that too). Error answers only:
 * no cost on a call that succeeds.
 */
function fittedFailure(exception: unknown, transport: BranchTransport, carrier: BranchCarrier): unknown {
  const own = exception instanceof DtmFailureError;
  if (!own && dtmResultOfError(exception) !== 'FAILURE') return exception;
  if (transport.completeOp(carrier) !== 'action' || transport.transType(carrier) !== 'saga') {
    // the transports cut an app's own exceptions to ANSWERED_TEXT_MAX
    return !own || exception.reason.length <= ANSWERED_TEXT_MAX ? exception : new DtmFailureError(truncate(exception.reason, ANSWERED_TEXT_MAX), { cause: exception, gid: exception.gid });
  }
  const url = (transport.protocol === 'http' ? 'https://'.length + (transport.header(carrier, 'host') ?? '').length : 0) + transport.path(carrier).length;
  // as DTM stores it: code points of the text the transport answers (over HTTP the JSON body, its escapes included)
  const length = (reason: string) => Array.from(transport.failureText(reason)).length;
  const budget = Math.max(DTM_TEXT_MAX - SAGA_REASON_FRAME - url - SAGA_URL_SLACK, length('') + MIN_FAILURE_REASON);
  if (!own) {
    // an app's own 409 / ABORTED: answered as it is when it fits, else as the module's FAILURE with its message cut to fit
    if (Array.from(transport.answeredText(exception)).length <= budget) return exception;
    return new DtmFailureError(cutToFit(failureMessage(exception), budget, length), { cause: exception });
  }
  const reason = cutToFit(exception.reason, budget, length);
  return reason === exception.reason ? exception : new DtmFailureError(reason, { cause: exception, gid: exception.gid });
}

/** The message of an app's own FAILURE (an HttpException 409, an RpcException ABORTED): what its answer says why. */
function failureMessage(exception: unknown): string {
  return rpcExceptionDetails(exception) ?? (exception instanceof HttpException ? httpExceptionMessage(exception) : messageOf(exception));
}

/** How a FAILURE answer's error is named in the warning that it cannot roll anything back. */
function failureName(exception: unknown): string {
  if (exception instanceof DtmFailureError) return 'DtmFailureError';
  if (exception instanceof HttpException) return `an HttpException with status 409 (FAILURE)`;
  return 'an RpcException with code ABORTED (FAILURE)';
}

/**
 * The message of an HttpException (a pipe's 400 / 422: class-validator's ValidationPipe answers a list of messages),
 * with control characters escaped: it may name what the payload holds (`property <name> should not exist`).
 */
function httpExceptionMessage(exception: HttpException): string {
  const response = exception.getResponse() as { message?: unknown } | string;
  const message = typeof response === 'string' ? response : response?.message;
  return escapeControls(Array.isArray(message) ? message.join('; ') : typeof message === 'string' ? message : exception.message);
}

/** The most characters of a failed branch call's message recorded for the diagnosis (cut between words, see `truncate`). */
const RECORDED_MESSAGE_MAX = 500;

/** What a failed branch call is recorded as (for the diagnosis of a transaction that does not finish in time). */
function failureOf(handler: string, exception: unknown, protocol: string): Omit<RecordedBranchFailure, 'at'> {
  const http = exception instanceof HttpException;
  // what the call was answered (see the transports' `answer`): over gRPC the code an HttpException's status stands for, an RpcException's own code, else INTERNAL (13)
  const status = protocol === 'grpc' ? (http ? grpcCodeOfHttpException(exception) : (rpcExceptionCode(exception) ?? 13)) : http ? exception.getStatus() : 500;
  const message = rpcExceptionDetails(exception) ?? messageOf(exception);
  const failure: Omit<RecordedBranchFailure, 'at'> = { handler, status, message: truncate(message, RECORDED_MESSAGE_MAX) };
  const step = xaModuleStepOf(exception);
  if (step) failure.step = step;
  return failure;
}

/**
 * A handler's error as its log line shows it: its stack, and for an RpcException the message grpc-js
 * answered (its details, which its own message and stack leave out) in place of the stack's first line.
 */
function shownError(exception: unknown): string {
  const details = rpcExceptionDetails(exception);
  if (details === undefined) {
    if (!(exception instanceof Error)) return loggedText(textOf(exception));
    const { stack, message } = exception;
    if (stack === undefined) return loggedText(message);
    if (stack.length <= ANSWERED_TEXT_MAX) return stack;
    // a message of megabytes (each retry of DTM's logs it again): cut, its stack's frames kept
    const at = stack.indexOf(message);
    return at < 0 ? loggedText(stack) : `${stack.slice(0, at)}${loggedText(message)}${stack.slice(at + message.length)}`;
  }
  const stack = (exception as Error).stack ?? '';
  const frames = stack.indexOf('\n    at ');
  return `RpcException: ${loggedText(details)}${frames >= 0 ? stack.slice(frames) : ''}`;
}

/** `text` as a log line quotes it: whole up to {@link ANSWERED_TEXT_MAX} characters, else cut (`truncate`) with a note of its length. */
function loggedText(text: string): string {
  return text.length <= ANSWERED_TEXT_MAX ? text : `${truncate(text, ANSWERED_TEXT_MAX)} [cut for the log: ${text.length} characters in all]`;
}
