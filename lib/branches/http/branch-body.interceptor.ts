import { Injectable, InternalServerErrorException, Logger, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { map, type Observable } from 'rxjs';
import { MESSAGES } from '../../dtm.messages.js';
import { handlerName } from '../branch.types.js';
import { dtmResultOfBody, errorOfResultBody } from '../branch-result.js';

const RESULT_WORDS = /FAILURE|ONGOING/;

/**
 * Development only (decorated routes get it unless NODE_ENV is `production`), HTTP only: refuses,
 * loudly, a success body containing FAILURE or ONGOING in other text, which DTM would read as that
 * result instead of success. In production the body is sent as it is, and DTM reads it as DTM reads
 * it. A body that speaks DTM's result protocol (a string, or `{ dtm_result }`) is answered as DTM
 * reads it in every environment (409 / 425, as the error thrown): see `dtmResultOfBody`. (DTM reads a
 * gRPC branch's reply by its status code alone.)
 */
@Injectable()
export class DtmBranchBodyInterceptor implements NestInterceptor {
  private readonly logger = new Logger('DtmBranch');

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const where = handlerName(context);
    return next.handle().pipe(map((result: unknown) => this.checkBody(result, where)));
  }

  private checkBody(result: unknown, where: string): unknown {
    if (result === undefined || result === null) return result;
    const answer = dtmResultOfBody(result);
    if (answer) throw errorOfResultBody(where, answer);
    const text = typeof result === 'string' ? result : Buffer.isBuffer(result) ? result.toString('utf8') : JSON.stringify(result);
    if (text !== undefined && RESULT_WORDS.test(text)) {
      this.logger.error(MESSAGES.successBodyHasResultWord(where, text));
      throw new InternalServerErrorException(MESSAGES.successBodyRefused(where));
    }
    return result;
  }
}
