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
