import type { BarrierDatabase, BarrierExecResult, BarrierStatement, BarrierTransaction } from './barrier.types.js';

/** The part of a `mysql2/promise` connection the barrier uses. */
export interface MysqlConnectionLike {
  /** Runs a statement without parameters (text protocol). */
  query(sql: string): Promise<[unknown, unknown]>;
  /** Runs a prepared statement: the server binds `params` (never quoted into the SQL). */
  execute(sql: string, params: (string | number | null)[]): Promise<[unknown, unknown]>;
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
 * connection. The barrier's statements are prepared statements whose parameters the server binds,
 * so they are safe whatever the sql_mode (see {@link mysqlExecute}); `multipleStatements` is not
 * needed.
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

/**
 * Runs one statement on a `mysql2` connection or pool (also the XA adapter's). With parameters it is
 * a prepared statement (`execute`): the server binds them. mysql2's `query(sql, values)` would quote
 * them into the SQL on the client with backslash escapes, which the NO_BACKSLASH_ESCAPES sql_mode
 * turns off (a `'` in a value then ends the string). Without parameters (XA statements, DDL, which
 * the prepared-statement protocol does not take) it goes as text.
 */
export async function mysqlExecute(connection: MysqlConnectionLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  // the barrier's values are strings; others a BarrierTransaction's user passes are checked by mysql2
  const [result] = params.length > 0 ? await connection.execute(sql, params as (string | number | null)[]) : await connection.query(sql);
  return toExecResult(result);
}

/** A mysql2 answer (rows, or a result header) as the barrier reads it. */
export function toExecResult(result: unknown): BarrierExecResult {
  if (Array.isArray(result)) return { affected: 0, rows: result as Record<string, unknown>[] };
  return { affected: Number((result as { affectedRows?: number }).affectedRows ?? 0), rows: [] };
}

/**
 * START TRANSACTION, then `leading`, each a prepared statement (mysql2 keeps them prepared per
 * connection, so after the first call each costs one round trip). They do not ride with START
 * TRANSACTION in one multi-statement query: such a query cannot be prepared, and its parameters
 * would be quoted on the client.
 */
async function begin(connection: MysqlConnectionLike & { beginTransaction(): Promise<void> }, leading: BarrierStatement[]): Promise<BarrierExecResult[]> {
  await connection.beginTransaction();
  const results: BarrierExecResult[] = [];
  for (const statement of leading) results.push(await mysqlExecute(connection, statement.sql, statement.params));
  return results;
}
