import { Catch, HttpException, Injectable, Logger, type ArgumentsHost, type ExceptionFilter, type ExecutionContext } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { BRANCH_HANDLER, branchOf } from './branch.guard.js';
import { handlerName, type BranchKind } from './branch.types.js';

/** Branch kinds whose FAILURE cannot roll anything back: DTM only retries them. */
const MUST_NOT_FAIL: ReadonlySet<BranchKind> = new Set(['saga-compensate', 'tcc-confirm', 'tcc-cancel', 'msg']);

/**
 * DTM's branch protocol in one place, for decorated handlers: `DtmFailureError` → 409 with a body
 * DTM reads as FAILURE (the reason in it), `DtmOngoingError` → 425 (ONGOING), an HttpException →
 * its own status and body, anything else → 500 with a generic body (DTM retries with backoff; the
 * error's text is not sent, because DTM would read a FAILURE or ONGOING in it as that result).
 * Warns, naming the handler, when a handler whose FAILURE cannot roll anything back throws one.
 */
@Catch()
@Injectable()
export class DtmBranchExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('DtmBranch');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const http = host.switchToHttp();
    const response = http.getResponse<unknown>();
    if (exception instanceof DtmFailureError) this.warnIfMustNotFail(http.getRequest());
    const [status, body] = this.answer(exception);
    this.adapterHost.httpAdapter.reply(response, body, status);
  }

  private warnIfMustNotFail(request: { query?: Record<string, unknown>; [BRANCH_HANDLER]?: ExecutionContext }): void {
    const context = request[BRANCH_HANDLER];
    const branch = context && branchOf(context);
    const op = String(request.query?.op ?? '');
    if (context && branch && (MUST_NOT_FAIL.has(branch.kind) || (branch.kind === 'xa' && op !== 'action'))) {
      this.logger.warn(MESSAGES.failureCannotRollBack(handlerName(context), branch.kind, op));
    }
  }

  private answer(exception: unknown): [number, unknown] {
    if (exception instanceof DtmFailureError) return [409, { dtm_result: 'FAILURE', message: exception.reason }];
    if (exception instanceof DtmOngoingError) return [425, { dtm_result: 'ONGOING', message: exception.message }];
    if (exception instanceof HttpException) return [exception.getStatus(), exception.getResponse()];
    this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    return [500, { statusCode: 500, message: 'Internal server error' }];
  }
}
