import { createParamDecorator, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import { handlerName } from '../branches/branch.guard.js';
import { MESSAGES } from '../dtm.messages.js';
import { BARRIER_TX } from './barrier.interceptor.js';

/**
 * Parameter decorator: the local transaction a barrier-guarded branch handler runs in (what its
 * barrier connection hands out: a pg client, a mysql2 connection, a TypeORM EntityManager ...).
 * Do the handler's database work through it, so it commits or rolls back with the barrier rows.
 */
export const BarrierTx = createParamDecorator((_data: unknown, context: ExecutionContext): unknown => {
  const request = context.switchToHttp().getRequest<Record<symbol, unknown>>();
  if (!(BARRIER_TX in request)) throw new InternalServerErrorException(MESSAGES.noBarrierTx(handlerName(context)));
  return request[BARRIER_TX];
});
