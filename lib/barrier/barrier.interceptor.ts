import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { from, lastValueFrom, type Observable } from 'rxjs';
import { branchOf } from '../branches/branch.guard.js';
import type { BranchMetadata } from '../branches/branch.types.js';
import type { BarrierConnection, DtmConfig } from '../config/dtm-config.types.js';
import { branchInfoFromQuery } from '../context/dtm-context.js';
import { DTM_BARRIER_CONNECTIONS, DTM_BARRIER_DEFAULT_METADATA, DTM_CONFIG } from '../dtm.constants.js';
import { BranchBarrier } from './branch-barrier.js';

/** Where the interceptor leaves the handler's transaction handle on the request, for `@BarrierTx()`. */
export const BARRIER_TX = Symbol('nestjs-dtm:barrier-tx');
const BARRIER_ACTIVE = Symbol('nestjs-dtm:barrier-active');

/**
 * The barrier connection a branch handler uses: its decorator's `barrier` option, else its
 * controller's `@UseBarrier()` (which XA branches, having their own local XA transaction, ignore).
 */
export function barrierConnectionOf(branch: BranchMetadata, controller: object): string | undefined {
  if (branch.options.barrier === false) return undefined;
  if (branch.options.barrier) return branch.options.barrier;
  return branch.kind === 'xa' ? undefined : (Reflect.getMetadata(DTM_BARRIER_DEFAULT_METADATA, controller) as string | undefined);
}

/** Whether a barrier connection is a Redis client rather than a SQL database. */
export function isRedisConnection(connection: BarrierConnection): connection is Extract<BarrierConnection, { redis: unknown }> {
  return 'redis' in connection;
}

/**
 * Runs a branch handler inside a barrier-guarded local transaction on its barrier connection:
 * committed only if the handler succeeds; a duplicate, hanging or null-compensation call answers
 * 200 without running the handler. For `@MsgQueryPrepared` it answers the back-check from the
 * barrier table itself. (Applied by the branch decorators' `barrier` option and by `@UseBarrier()`;
 * when both apply, the second one steps aside.)
 */
@Injectable()
export class DtmBarrierInterceptor implements NestInterceptor {
  constructor(
    @Inject(DTM_BARRIER_CONNECTIONS) private readonly connections: Map<string, BarrierConnection>,
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<Record<symbol, unknown> & { query?: Record<string, unknown> }>();
    const branch = branchOf(context);
    const name = branch && !request[BARRIER_ACTIVE] ? barrierConnectionOf(branch, context.getClass()) : undefined;
    const connection = name ? this.connections.get(name) : undefined;
    const info = branchInfoFromQuery(request.query, {});
    if (!branch || !connection || !info) return next.handle();
    request[BARRIER_ACTIVE] = true;
    const barrier = BranchBarrier.from(info, { table: this.config.barrierTable });
    if (branch.kind === 'msg-query-prepared') {
      const check = isRedisConnection(connection) ? barrier.redisQueryPrepared(connection.redis) : barrier.queryPrepared(connection);
      return from(check.then(() => undefined));
    }
    if (isRedisConnection(connection)) return next.handle(); // refused at start-up
    const guarded = barrier
      .callWithDb(connection, (handle) => {
        request[BARRIER_TX] = handle;
        return lastValueFrom(next.handle(), { defaultValue: undefined });
      })
      .then((outcome) => (outcome.executed ? outcome.result : undefined));
    return from(guarded);
  }
}
