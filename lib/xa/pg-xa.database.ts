import { pgExecute } from '../barrier/pg-barrier.store.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { XaDatabase } from './xa.types.js';

/** The part of a connected `pg` `Client` an XA branch uses. */
export interface PgXaClientLike {
  /** `command`: the command tag's first word, as `pg` reports it (without it, each prepare is checked in `pg_prepared_xacts`: one round trip more). */
  query(sql: string, params?: unknown[]): Promise<{ rowCount: number | null; rows: Record<string, unknown>[]; command?: string }>;
  end(): Promise<void>;
  /** `pg` emits `'error'` on a client whose connection broke while no query was running on it. */
  on?(event: 'error', listener: (err: Error) => void): unknown;
}

/** The 'error' listener of an XA branch's client: the broken connection fails the branch's next statement, or its end, instead. */
const heardError = (): void => undefined;

/**
 * PostgreSQL for XA branches (two-phase commit: PREPARE TRANSACTION; the server needs
 * `max_prepared_transactions` > 0). `connect` makes a new dedicated, connected client each time,
 * e.g. `async () => { const c = new pg.Client(config); await c.connect(); return c; }`. A pg
 * pool's client (`pool.connect()`) is given back at once and refused with `DtmUsageError`: the
 * branch's `end()` would close it without giving its slot back, so the pool would run out of slots.
 */
export function pgXaDatabase<C extends PgXaClientLike>(connect: () => Promise<C>): XaDatabase<C> {
  return {
    dialect: 'postgres',
    async connect() {
      const client = await connect();
      if (typeof (client as { release?: unknown }).release === 'function') {
        (client as unknown as { release(): void }).release(); // nothing ran on it
        throw new DtmUsageError(MESSAGES.pgXaPooledClient());
      }
      // the server may end the session during the branch (pg_terminate_backend, a failover): pg then
      // emits 'error' on the client, which unheard would end the process
      client.on?.('error', heardError);
      return {
        handle: client,
        execute: (sql, params = []) => pgExecute(client, sql, params),
        close: () => client.end(),
      };
    },
  };
}
