import type { BarrierDatabase, BarrierExecResult, BarrierTransaction } from './barrier.types.js';

/** The part of a `pg` client (`PoolClient` or `Client`) the barrier uses. */
export interface PgClientLike {
  query(sql: string, params?: unknown[]): Promise<{ rowCount: number | null; rows: Record<string, unknown>[] }>;
}

/** The part of a `pg` `Pool` the barrier uses. */
export interface PgPoolLike<C extends PgClientLike> extends PgClientLike {
  connect(): Promise<C & { release(err?: Error | boolean): void }>;
}

/** The barrier's view of a `pg` client inside your open transaction (`BEGIN` already sent). */
export function pgBarrierTransaction(client: PgClientLike): BarrierTransaction {
  return { dialect: 'postgres', execute: (sql, params) => pgExecute(client, sql, params) };
}

/** A `pg` pool as a barrier database: transactions on one pooled client, handed to your code. */
export function pgBarrierDatabase<C extends PgClientLike>(pool: PgPoolLike<C>): BarrierDatabase<C> {
  return {
    dialect: 'postgres',
    async transaction<T>(work: (client: C, tx: BarrierTransaction) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await work(client, pgBarrierTransaction(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw err;
      } finally {
        client.release(broken);
      }
    },
    execute: (sql, params) => pgExecute(pool, sql, params),
  };
}

async function pgExecute(client: PgClientLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  const result = await client.query(sql, params);
  return { affected: result.rowCount ?? 0, rows: result.rows ?? [] };
}
