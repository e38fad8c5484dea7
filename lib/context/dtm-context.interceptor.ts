import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Observable } from 'rxjs';
import { ALWAYS_PASSED_HEADERS } from '../config/dtm-config.keys.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { DTM_CONFIG } from '../dtm.constants.js';
import { branchInfoFromQuery, dtmContext, pickHeaders } from './dtm-context.js';

/**
 * Global interceptor (HTTP only) that opens the module's AsyncLocalStorage around every handler:
 * the allow-listed inbound headers (`pass_through_headers`, plus W3C trace context) and, for a DTM
 * branch call, its branch info. Transactions started while the handler runs pass those headers on.
 */
@Injectable()
export class DtmContextInterceptor implements NestInterceptor {
  private readonly allowList: readonly string[];

  constructor(@Inject(DTM_CONFIG) config: DtmConfig) {
    this.allowList = [...new Set([...ALWAYS_PASSED_HEADERS, ...config.passThroughHeaders])];
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined>; query?: Record<string, unknown> }>();
    const headers = pickHeaders(request.headers, this.allowList);
    const store = { headers, branch: branchInfoFromQuery(request.query, headers) };
    return new Observable((subscriber) => dtmContext.run(store, () => next.handle().subscribe(subscriber)));
  }
}
