import type { BarrierDialect, BarrierExecResult } from '../barrier/barrier.types.js';

/** One dedicated database connection for one XA branch (never a pooled one: it may be left in an XA state). */
export interface XaConnection<Handle = unknown> {
  /** What the branch handler gets: a mysql2 connection, a pg client ... */
  readonly handle: Handle;
  /** Runs one statement on this connection. */
  execute(sql: string, params?: unknown[]): Promise<BarrierExecResult>;
  /** Closes the connection. */
  close(): Promise<void>;
}

/** A database XA branches run on: opens a new dedicated connection per branch call. */
export interface XaDatabase<Handle = unknown> {
  readonly dialect: BarrierDialect;
  connect(): Promise<XaConnection<Handle>>;
}
