import { Catch, HttpException, Injectable, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';

/**
 * DTM's branch protocol in one place, for decorated handlers: `DtmFailureError` → 409 with a body
 * DTM reads as FAILURE (the reason in it), `DtmOngoingError` → 425 (ONGOING), an HttpException →
 * its own status and body, anything else → 500 with a generic body (DTM retries with backoff; the
 * error's text is not sent, because DTM would read a FAILURE or ONGOING in it as that result).
 */
@Catch()
@Injectable()
export class DtmBranchExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('DtmBranch');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const response = host.switchToHttp().getResponse<unknown>();
    const [status, body] = this.answer(exception);
    this.adapterHost.httpAdapter.reply(response, body, status);
  }

  private answer(exception: unknown): [number, unknown] {
    if (exception instanceof DtmFailureError) return [409, { dtm_result: 'FAILURE', message: exception.reason }];
    if (exception instanceof DtmOngoingError) return [425, { dtm_result: 'ONGOING', message: exception.message }];
    if (exception instanceof HttpException) return [exception.getStatus(), exception.getResponse()];
    this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    return [500, { statusCode: 500, message: 'Internal server error' }];
  }
}
