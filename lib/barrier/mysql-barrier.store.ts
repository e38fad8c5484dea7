import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { BarrierDatabase, BarrierExecResult, BarrierStatement, BarrierTransaction, LocalTransactionBounds } from './barrier.types.js';

/** The part of a `mysql2/promise` connection the barrier uses. */
export interface MysqlConnectionLike {
  /** Runs a statement without parameters (text protocol). */
  query(sql: string): Promise<[unknown, unknown]>;
  /** Runs a prepared statement: the server binds `params` (never quoted into the SQL). */
  execute(sql: string, params: (string | number | null)[]): Promise<[unknown, unknown]>;
  /** mysql2's underlying connection (a pool hands out a new wrapper of the same connection each time). */
  readonly connection?: object;
}

/** The lock wait timeout each physical connection's session was given (set once per connection). */
const SESSION_LOCK_WAIT = new WeakMap<object, number>();

/**
 * Gives the session of `connection` `innodb_lock_wait_timeout = bounds.timeoutSeconds` (MySQL and
 * MariaDB), once per physical connection: a statement of a branch's local transaction then waits
 * for a row lock no longer than DTM waits for the call. One statement on a connection's first use
 * (or when the timeout changes), none after.
 */
export async function boundMysqlSession(connection: MysqlConnectionLike, bounds?: LocalTransactionBounds): Promise<void> {
  const key = connection.connection ?? connection;
  // the usual case, without making the closure: this connection's session has the bound already
  if (bounds?.timeoutSeconds === undefined || SESSION_LOCK_WAIT.get(key) === bounds.timeoutSeconds) return;
  await boundMysqlSessionOf(key, bounds, (sql) => connection.query(sql));
}

/** {@link boundMysqlSession} for the physical connection `key`, the statement run by `run` (adapters of other client libraries). */
export async function boundMysqlSessionOf(key: object, bounds: LocalTransactionBounds | undefined, run: (sql: string) => Promise<unknown>): Promise<void> {
  const sql = mysqlLockWaitSql(bounds);
  if (sql === undefined || SESSION_LOCK_WAIT.get(key) === bounds!.timeoutSeconds) return;
  await run(sql);
  SESSION_LOCK_WAIT.set(key, bounds!.timeoutSeconds!);
}

/** The statement that bounds a session's lock waits (also the XA adapter's, on its new connection); the value is checked here. */
export function mysqlLockWaitSql(bounds?: LocalTransactionBounds): string | undefined {
  const seconds = bounds?.timeoutSeconds;
  if (seconds === undefined) return undefined;
  if (!Number.isInteger(seconds) || seconds <= 0) throw new TypeError(`timeoutSeconds must be a positive whole number, got ${String(seconds)}`);
  return `SET SESSION innodb_lock_wait_timeout = ${seconds}`;
}

/** The part of a `mysql2/promise` pool the barrier uses. */
export interface MysqlPoolLike<C extends MysqlConnectionLike> extends MysqlConnectionLike {
  getConnection(): Promise<
    C & { beginTransaction(): Promise<void>; commit(): Promise<void>; rollback(): Promise<void>; release(): void; destroy?(): void }
  >;
}

/**
 * The barrier's view of a `mysql2` connection inside your open transaction (`beginTransaction()`
 * already called). A pool is refused with `DtmUsageError`: the barrier's rows would commit on their
 * own, whatever your business does; so is a connection of mysql2's callback API (pass `conn.promise()`).
 * A connection with no transaction open is told by the server's answer to the barrier's first insert:
 * `BranchBarrier.call` deletes that row again and refuses the call with `DtmUsageError`.
 */
export function mysqlBarrierTransaction(connection: MysqlConnectionLike): BarrierTransaction {
  if (typeof (connection as Partial<MysqlPoolLike<MysqlConnectionLike>>).getConnection === 'function') {
    throw new DtmUsageError(MESSAGES.barrierTxIsPool('mysqlBarrierTransaction', 'the connection you called beginTransaction() on (const conn = await pool.getConnection())'));
  }
  if (isCallbackApi(connection)) throw new DtmUsageError(MESSAGES.mysqlCallbackApi('mysqlBarrierTransaction', 'connection', 'conn.promise()'));
  return {
    dialect: 'mysql',
    execute: async (sql, params) => {
      const answer = await mysqlRun(connection, sql, params);
      const result = toExecResult(answer);
      // the server's answer tells whether the statement ran in a transaction (beginTransaction() forgotten: committed already)
      const status = (answer as { serverStatus?: unknown } | null)?.serverStatus;
      if (typeof status === 'number' && (status & SERVER_STATUS_IN_TRANS) === 0) result.outsideTransaction = true;
      return result;
    },
  };
}

/** The server status flag of MySQL's protocol set while a transaction is open (in every OK packet). */
const SERVER_STATUS_IN_TRANS = 0x0001;

/**
 * Whether `client` is of mysql2's callback API (`mysql2`, not `mysql2/promise`: what TypeORM's and
 * Knex's MySQL drivers hold): its `query` / `execute` answer through a callback, and it has
 * `promise()`, which gives the promise API of the same connection or pool.
 */
function isCallbackApi(client: object): boolean {
  return typeof (client as { promise?: unknown }).promise === 'function';
}

/** {@link mysqlBarrierTransaction} of a connection this module began the transaction on itself (no check). */
function ownMysqlTransaction(connection: MysqlConnectionLike): BarrierTransaction {
  return { dialect: 'mysql', execute: (sql, params) => mysqlExecute(connection, sql, params) };
}

/**
 * A `mysql2/promise` pool as a barrier database (MySQL or MariaDB): transactions on one pooled
 * connection. The barrier's statements are prepared statements whose parameters the server binds,
 * so they are safe whatever the sql_mode (see {@link mysqlExecute}); `multipleStatements` is not
 * needed. With the branch timeout (the module passes it), each pooled connection's session gets
 * `innodb_lock_wait_timeout` once, on its first use: no extra round trip after that. A connection
 * (no `getConnection()`) or a pool of mysql2's callback API is refused with `DtmUsageError`.
 */
export function mysqlBarrierDatabase<C extends MysqlConnectionLike>(pool: MysqlPoolLike<C>): BarrierDatabase<C> {
  if (typeof pool === 'object' && pool !== null) {
    if (isCallbackApi(pool)) throw new DtmUsageError(MESSAGES.mysqlCallbackApi('mysqlBarrierDatabase', 'pool', 'pool.promise()'));
    if (typeof pool.getConnection !== 'function') throw new DtmUsageError(MESSAGES.mysqlBarrierDatabaseNotPool());
  }
  return {
    dialect: 'mysql',
    async transaction<T>(
      work: (connection: C, tx: BarrierTransaction, leading: BarrierExecResult[]) => Promise<T>,
      leading: BarrierStatement[] = [],
      bounds?: LocalTransactionBounds,
    ): Promise<T> {
      const connection = await pool.getConnection();
      let broken = false;
      try {
        await boundMysqlSession(connection, bounds);
        const leadingResults = await begin(connection, leading);
        const result = await work(connection, ownMysqlTransaction(connection), leadingResults);
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
  return toExecResult(await mysqlRun(connection, sql, params));
}

/** {@link mysqlExecute}'s statement, answered as mysql2 answers it (rows, or a result header). */
async function mysqlRun(connection: MysqlConnectionLike, sql: string, params: unknown[]): Promise<unknown> {
  // the barrier's values are strings; others a BarrierTransaction's user passes are checked by mysql2
  const [result] = params.length > 0 ? await connection.execute(sql, params as (string | number | null)[]) : await connection.query(sql);
  return result;
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
