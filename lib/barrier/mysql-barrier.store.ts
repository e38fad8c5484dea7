import type { BarrierDatabase, BarrierExecResult, BarrierTransaction } from './barrier.types.js';

/** The part of a `mysql2/promise` connection the barrier uses. */
export interface MysqlConnectionLike {
  query(sql: string, params?: unknown[]): Promise<[unknown, unknown]>;
}

/** The part of a `mysql2/promise` pool the barrier uses. */
export interface MysqlPoolLike<C extends MysqlConnectionLike> extends MysqlConnectionLike {
  getConnection(): Promise<
    C & { beginTransaction(): Promise<void>; commit(): Promise<void>; rollback(): Promise<void>; release(): void; destroy?(): void }
  >;
}

/** The barrier's view of a `mysql2` connection inside your open transaction (`beginTransaction()` already called). */
export function mysqlBarrierTransaction(connection: MysqlConnectionLike): BarrierTransaction {
  return { dialect: 'mysql', execute: (sql, params) => mysqlExecute(connection, sql, params) };
}

/** A `mysql2/promise` pool as a barrier database (MySQL or MariaDB): transactions on one pooled connection. */
export function mysqlBarrierDatabase<C extends MysqlConnectionLike>(pool: MysqlPoolLike<C>): BarrierDatabase<C> {
  return {
    dialect: 'mysql',
    async transaction<T>(work: (connection: C, tx: BarrierTransaction) => Promise<T>): Promise<T> {
      const connection = await pool.getConnection();
      let broken = false;
      try {
        await connection.beginTransaction();
        const result = await work(connection, mysqlBarrierTransaction(connection));
        await connection.commit();
        return result;
      } catch (err) {
        await connection.rollback().catch(() => (broken = true));
        throw err;
      } finally {
        if (broken && connection.destroy) connection.destroy();
        else connection.release();
      }
    },
    execute: (sql, params) => mysqlExecute(pool, sql, params),
  };
}

async function mysqlExecute(connection: MysqlConnectionLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  const [result] = await connection.query(sql, params);
  if (Array.isArray(result)) return { affected: 0, rows: result as Record<string, unknown>[] };
  return { affected: Number((result as { affectedRows?: number }).affectedRows ?? 0), rows: [] };
}
