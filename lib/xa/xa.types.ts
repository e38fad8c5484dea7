import type { BarrierDialect, BarrierExecResult } from '../barrier/barrier.types.js';

/** One database connection for one XA branch call: a dedicated one, or a pool's given back only when the call left it clean. */
export interface XaConnection<Handle = unknown> {
  /** What the branch handler gets: a mysql2 connection, a pg client ... */
  readonly handle: Handle;
  /** Runs one statement on this connection. */
  execute(sql: string, params?: unknown[]): Promise<BarrierExecResult>;
  /** Closes the connection; `clean`: no transaction is open on it and nothing failed on it, so a pool may lend it again (otherwise a pool's is discarded). */
  close(clean?: boolean): Promise<void>;
}

/** A database XA branches run on: a connection per branch call (a new one, or a pool's). */
export interface XaDatabase<Handle = unknown> {
  readonly dialect: BarrierDialect;
  connect(): Promise<XaConnection<Handle>>;
}

/**
 * The 'error' listener the module puts on a dedicated XA connection while a branch call holds it: a
 * connection the server ended while no statement ran on it (a kill, a timeout, a failover) makes the
 * driver emit 'error', which unheard would end the process; the broken connection then fails the
 * business's next statement, or the module's rollback, instead.
 */
export const heardError = (): void => undefined;
