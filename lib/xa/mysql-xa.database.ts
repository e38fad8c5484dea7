import { mysqlExecute, type MysqlConnectionLike } from '../barrier/mysql-barrier.store.js';
import type { XaDatabase } from './xa.types.js';

/**
 * The part of a `mysql2/promise` connection an XA branch uses: `execute` for the barrier row (a
 * prepared statement, the server binds its values), `query` for the XA statements, which take no
 * parameters.
 */
export interface MysqlXaConnectionLike extends MysqlConnectionLike {
  end(): Promise<void>;
}

/**
 * MySQL / MariaDB for XA branches. `connect` makes a new dedicated connection each time, e.g.
 * `() => mysql.createConnection(options)` (not a pool's: a connection left in an XA state must
 * not go back to a pool).
 */
export function mysqlXaDatabase<C extends MysqlXaConnectionLike>(connect: () => Promise<C>): XaDatabase<C> {
  return {
    dialect: 'mysql',
    async connect() {
      const connection = await connect();
      return {
        handle: connection,
        execute: (sql, params = []) => mysqlExecute(connection, sql, params),
        close: () => connection.end(),
      };
    },
  };
}
