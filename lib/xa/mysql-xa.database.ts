import type { XaDatabase } from './xa.types.js';

/** The part of a `mysql2/promise` connection an XA branch uses. */
export interface MysqlXaConnectionLike {
  query(sql: string, params?: unknown[]): Promise<[unknown, unknown]>;
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
        async execute(sql, params = []) {
          const [result] = await connection.query(sql, params);
          if (Array.isArray(result)) return { affected: 0, rows: result as Record<string, unknown>[] };
          return { affected: Number((result as { affectedRows?: number }).affectedRows ?? 0), rows: [] };
        },
        close: () => connection.end(),
      };
    },
  };
}
