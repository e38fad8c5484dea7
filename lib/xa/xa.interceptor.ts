import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { from, lastValueFrom, type Observable } from 'rxjs';
import { BARRIER_TX } from '../barrier/barrier.interceptor.js';
import { branchOf } from '../branches/branch.guard.js';
import { DtmClient } from '../client/dtm.client.js';
import { branchInfoFromQuery } from '../context/dtm-context.js';
import { DTM_XA_CONNECTIONS } from '../dtm.constants.js';
import type { XaDatabase } from './xa.types.js';

/**
 * Runs an `@XaBranch(name, { db })` handler's local XA transaction (see
 * `DtmClient.xaLocalTransaction`): the handler runs for `op=action` only, with its dedicated
 * connection available through `@BarrierTx()`; phase 2 is answered by the module.
 */
@Injectable()
export class DtmXaInterceptor implements NestInterceptor {
  constructor(
    @Inject(DTM_XA_CONNECTIONS) private readonly databases: Map<string, XaDatabase>,
    private readonly dtm: DtmClient,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<Record<symbol, unknown> & { query?: Record<string, unknown> }>();
    const name = branchOf(context)?.options.db;
    const db = name ? this.databases.get(name) : undefined;
    const info = branchInfoFromQuery(request.query, {});
    if (!db || !info) return next.handle(); // refused at start-up / answered 400 by the guard
    return from(
      this.dtm.xaLocalTransaction(info, db, (handle) => {
        request[BARRIER_TX] = handle;
        return lastValueFrom(next.handle(), { defaultValue: undefined });
      }),
    );
  }
}
