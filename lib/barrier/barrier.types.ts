import type { RedisLike } from './redis-barrier.store.js';

/** SQL dialects the barrier speaks. */
export type BarrierDialect = 'postgres' | 'mysql';

/** What one statement did: rows it changed (inserted, updated, deleted) and rows it returned. */
export interface BarrierExecResult {
  affected: number;
  rows: Record<string, unknown>[];
  /**
   * The statement's command tag, where the client reports it (`pg`: its first word, e.g. `INSERT`,
   * `ROLLBACK`). An XA branch on PostgreSQL reads it after `PREPARE TRANSACTION`, which answers
   * `ROLLBACK` when it prepared nothing; without it, the branch asks `pg_prepared_xacts` instead.
   */
  command?: string;
  /**
   * The statement ran outside any transaction, so it is committed already (MySQL / MariaDB tell it in
   * every answer's server status; `mysqlBarrierTransaction` reports it): `BranchBarrier.call` then
   * deletes the barrier rows it wrote and refuses the call before the business runs.
   */
  outsideTransaction?: boolean;
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

/**
 * Bounds of one local transaction of a branch call. The pg and mysql2 adapters apply them without
 * an extra round trip (PostgreSQL: `SET LOCAL` in the BEGIN's query; MySQL / MariaDB: the session's
 * `innodb_lock_wait_timeout`, set once per pooled connection); an adapter of your own may ignore them.
 */
export interface LocalTransactionBounds {
  /**
   * Whole seconds a statement may wait for a row lock (PostgreSQL: also run) before it fails, so
   * that no connection is held after DTM stopped waiting for the call: the module passes its
   * `lynx.dtm.branch_timeout`.
   */
  timeoutSeconds?: number;
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
  transaction<T>(work: (handle: Handle, tx: BarrierTransaction, leading: BarrierExecResult[]) => Promise<T>, leading?: BarrierStatement[], bounds?: LocalTransactionBounds): Promise<T>;
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
