import type { BarrierDatabase, BarrierExecResult, BarrierStatement, BarrierTransaction } from './barrier.types.js';

/** The part of a `mysql2/promise` connection the barrier uses. */
export interface MysqlConnectionLike {
  query(sql: string, params?: unknown[]): Promise<[unknown, unknown]>;
  /** mysql2's underlying connection: with `multipleStatements`, the barrier's inserts go with START TRANSACTION. */
  readonly connection?: { readonly config?: { readonly multipleStatements?: boolean } };
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

/**
 * A `mysql2/promise` pool as a barrier database (MySQL or MariaDB): transactions on one pooled
 * connection. Created with `multipleStatements: true`, the pool lets the barrier send its inserts
 * with START TRANSACTION in one round trip; otherwise they cost one more.
 */
export function mysqlBarrierDatabase<C extends MysqlConnectionLike>(pool: MysqlPoolLike<C>): BarrierDatabase<C> {
  return {
    dialect: 'mysql',
    async transaction<T>(work: (connection: C, tx: BarrierTransaction, leading: BarrierExecResult[]) => Promise<T>, leading: BarrierStatement[] = []): Promise<T> {
      const connection = await pool.getConnection();
      let broken = false;
      try {
        const leadingResults = await begin(connection, leading);
        const result = await work(connection, mysqlBarrierTransaction(connection), leadingResults);
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

/** Runs one statement on a `mysql2` connection or pool (also the XA adapter's). */
export async function mysqlExecute(connection: MysqlConnectionLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  const [result] = await connection.query(sql, params);
  return toExecResult(result);
}

function toExecResult(result: unknown): BarrierExecResult {
  if (Array.isArray(result)) return { affected: 0, rows: result as Record<string, unknown>[] };
  return { affected: Number((result as { affectedRows?: number }).affectedRows ?? 0), rows: [] };
}

/** START TRANSACTION, then `leading`: in one round trip when the connection allows several statements. */
async function begin(connection: MysqlConnectionLike & { beginTransaction(): Promise<void> }, leading: BarrierStatement[]): Promise<BarrierExecResult[]> {
  if (leading.length > 0 && connection.connection?.config?.multipleStatements) {
    const sql = ['START TRANSACTION', ...leading.map((s) => s.sql)].join('; ');
    const [results] = await connection.query(sql, leading.flatMap((s) => s.params));
    return (results as unknown[]).slice(1).map(toExecResult);
  }
  await connection.beginTransaction();
  const results: BarrierExecResult[] = [];
  for (const statement of leading) results.push(await mysqlExecute(connection, statement.sql, statement.params));
  return results;
}
