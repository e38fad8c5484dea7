import type { RedisLike } from './redis-barrier.store.js';

/** SQL dialects the barrier speaks. */
export type BarrierDialect = 'postgres' | 'mysql';

/** What one statement did: rows it changed (inserted, updated, deleted) and rows it returned. */
export interface BarrierExecResult {
  affected: number;
  rows: Record<string, unknown>[];
}

/**
 * The barrier's view of an open local transaction: one way to run a statement in it. nestjs-dtm
 * ships one for `pg`, `mysql2` and TypeORM; implement it for any other client (Knex, Prisma, Drizzle ...).
 */
export interface BarrierTransaction {
  readonly dialect: BarrierDialect;
  /** Runs `sql` (placeholders `$1..` for postgres, `?` for mysql) inside the transaction. */
  execute(sql: string, params: unknown[]): Promise<BarrierExecResult>;
}

/** One statement with its parameters. */
export interface BarrierStatement {
  sql: string;
  params: unknown[];
}

/**
 * A database the barrier can open local transactions on (for `callWithDb`, the decorators' `barrier`
 * option and the outbox). `Handle` is what your business code gets: a pg client, a mysql2
 * connection, a TypeORM EntityManager ...
 */
export interface BarrierDatabase<Handle = unknown> {
  readonly dialect: BarrierDialect;
  /**
   * Runs `work` in a new local transaction: commits if it resolves, rolls back if it rejects.
   * `leading` statements (the barrier's inserts) run first in the transaction, their results passed
   * to `work` in order; an adapter may send them with the BEGIN in one round trip (the pg adapter
   * does). An adapter that ignores them passes none, and the barrier runs them itself.
   */
  transaction<T>(work: (handle: Handle, tx: BarrierTransaction, leading: BarrierExecResult[]) => Promise<T>, leading?: BarrierStatement[]): Promise<T>;
  /** Runs one statement on its own (autocommit), for the message back-check. */
  execute(sql: string, params: unknown[]): Promise<BarrierExecResult>;
}

/** What a barrier-guarded call did. */
export type BarrierOutcome<T> =
  | { executed: true; result: T }
  | {
      executed: false;
      /**
       * `null-compensation`: a compensation / cancel / rollback whose action never ran;
       * `duplicate`: this call (or, for an action / try, a call that must not run after its
       * compensation: hanging) was already handled.
       */
      reason: 'null-compensation' | 'duplicate';
    };

/** A connection the barrier can use: a SQL database, or Redis (for message back-checks). */
export type BarrierConnection = BarrierDatabase | RedisBarrierConnection;

/** A Redis client registered for barriers (made by `redisBarrierConnection`). */
export interface RedisBarrierConnection {
  readonly redis: RedisLike;
}
