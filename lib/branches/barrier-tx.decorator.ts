import { createParamDecorator } from '@nestjs/common';
import { barrierTxFactory } from './branch-handler.binding.js';

/**
 * Parameter decorator: the local transaction a barrier-guarded branch handler runs in (what its
 * barrier connection hands out: a pg client, a mysql2 connection, a TypeORM EntityManager ...), or
 * an `@XaBranch(name, { db })` handler's XA connection. Do the handler's database work through it,
 * so it commits or rolls back with the barrier rows.
 */
export const BarrierTx = createParamDecorator(barrierTxFactory);
