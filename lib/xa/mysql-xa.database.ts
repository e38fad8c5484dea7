import { mysqlExecute, type MysqlConnectionLike } from '../barrier/mysql-barrier.store.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { heardError, type XaDatabase } from './xa.types.js';

/**
 * The part of a `mysql2/promise` connection an XA branch uses: `execute` for the barrier row (a
 * prepared statement, the server binds its values), `query` for the XA statements, which take no
 * parameters.
 */
export interface MysqlXaConnectionLike extends MysqlConnectionLike {
  end(): Promise<void>;
  /** mysql2 emits `'error'` on a connection whose link broke while no statement was running on it. */
  on?(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * MySQL / MariaDB for XA branches. `connect` makes a new dedicated connection each time, e.g.
 * `() => mysql.createConnection(options)`. A mysql2 pool's connection is given back at once and
 * refused with `DtmUsageError`: its `end()` would put it back into the pool with the branch's XA
 * transaction prepared on it, which the pool then hands out to other work.
 */
export function mysqlXaDatabase<C extends MysqlXaConnectionLike>(connect: () => Promise<C>): XaDatabase<C> {
  return {
    dialect: 'mysql',
    async connect() {
      const connection = await connect();
      if (isPoolConnection(connection)) {
        connection.release(); // nothing ran on it
        throw new DtmUsageError(MESSAGES.mysqlXaPooledConnection());
      }
      // the server may end the session while the business awaits something else (KILL, wait_timeout, a
      // failover): mysql2 then emits 'error' on the connection, which unheard would end the process
      // (mysql2/promise's createConnection happens to leave a listener of its own there; a connection of
      // the callback API made promise-based, createConnection(options).promise(), has none)
      connection.on?.('error', heardError);
      return {
        handle: connection,
        execute: (sql, params = []) => mysqlExecute(connection, sql, params),
        close: () => connection.end(),
      };
    },
  };
}

/**
 * Whether `connection` is a mysql2 pool's connection: the driver connection a `mysql2/promise`
 * connection wraps (or the connection itself) has `release()` only when a pool lent it (a promise
 * connection has a `release()` of its own either way, which calls that one).
 */
function isPoolConnection(connection: object): connection is { release(): void } {
  const driver = (connection as { connection?: { release?: unknown } }).connection ?? (connection as { release?: unknown });
  return typeof driver === 'object' && driver !== null && typeof driver.release === 'function';
}
