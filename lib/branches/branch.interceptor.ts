import { BadRequestException, Injectable, InternalServerErrorException, Logger, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { catchError, map, throwError, type Observable } from 'rxjs';
import { DTM_BRANCH_METADATA } from '../dtm.constants.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { REQUIRED_BRANCH_QUERY, type BranchKind, type BranchMetadata } from './branch.types.js';

/** Branch kinds whose FAILURE cannot roll anything back: DTM only retries them. */
const MUST_NOT_FAIL: ReadonlySet<BranchKind> = new Set(['saga-compensate', 'tcc-confirm', 'tcc-cancel', 'msg']);
const RESULT_WORDS = /FAILURE|ONGOING/;

/**
 * Around every decorated handler (HTTP only): answers 400 without running the handler when DTM's
 * query parameters are missing; in development refuses a success body DTM would misread as
 * FAILURE / ONGOING; warns when a handler whose FAILURE cannot roll anything back throws one.
 * Errors are always rethrown, for the branch filter to answer.
 */
@Injectable()
export class DtmBranchInterceptor implements NestInterceptor {
  private readonly logger = new Logger('DtmBranch');
  private readonly checkBodies = process.env.NODE_ENV !== 'production';

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const handler = context.getHandler();
    const where = `${context.getClass().name}.${handler.name}`;
    const branch = Reflect.getMetadata(DTM_BRANCH_METADATA, handler) as BranchMetadata;
    const query = context.switchToHttp().getRequest<{ query?: Record<string, unknown> }>().query ?? {};
    const missing = REQUIRED_BRANCH_QUERY.filter((key) => typeof query[key] !== 'string' || (key !== 'branch_id' && query[key] === ''));
    if (missing.length > 0) throw new BadRequestException(MESSAGES.branchQueryMissing(where, missing));
    const op = query.op as string;
    return next.handle().pipe(
      map((result) => (this.checkBodies ? this.checkBody(result, where) : result)),
      catchError((err: unknown) => {
        if (err instanceof DtmFailureError && (MUST_NOT_FAIL.has(branch.kind) || (branch.kind === 'xa' && op !== 'action'))) {
          this.logger.warn(MESSAGES.failureCannotRollBack(where, branch.kind, op));
        }
        return throwError(() => err);
      }),
    );
  }

  private checkBody(result: unknown, where: string): unknown {
    if (result === undefined || result === null) return result;
    const text = typeof result === 'string' ? result : Buffer.isBuffer(result) ? result.toString('utf8') : JSON.stringify(result);
    if (text !== undefined && RESULT_WORDS.test(text)) {
      this.logger.error(MESSAGES.successBodyHasResultWord(where, text));
      throw new InternalServerErrorException(MESSAGES.successBodyRefused(where));
    }
    return result;
  }
}
