import { pgExecute } from '../barrier/pg-barrier.store.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { heardError, type XaDatabase } from './xa.types.js';

/** The part of a connected `pg` `Client` an XA branch uses. */
export interface PgXaClientLike {
  /** `command`: the command tag's first word, as `pg` reports it (without it, each prepare is checked in `pg_prepared_xacts`: one round trip more). */
  query(sql: string, params?: unknown[]): Promise<{ rowCount: number | null; rows: Record<string, unknown>[]; command?: string }>;
  end(): Promise<void>;
  /** `pg` emits `'error'` on a client whose connection broke while no query was running on it. */
  on?(event: 'error', listener: (err: Error) => void): unknown;
}

/** The part of a `pg` `Pool` XA branches use: clients lent with `connect()` and given back with `release()` (`release(true)` discards one). */
export interface PgXaPoolLike<C extends PgXaPooledClientLike = PgXaPooledClientLike> {
  connect(): Promise<C>;
}

/** A client a `pg` `Pool` lends (`PoolClient`): given back with `release()`, discarded with `release(true)`. */
export interface PgXaPooledClientLike extends Omit<PgXaClientLike, 'end' | 'on'> {
  release(destroy?: boolean | Error): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * PostgreSQL for XA branches (two-phase commit: PREPARE TRANSACTION; the server needs
 * `max_prepared_transactions` > 0), given either a `pg` `Pool` (`pgXaDatabase(pool)`: each branch
 * call borrows a client and gives it back once nothing is open on it; PREPARE TRANSACTION detaches
 * the prepared work from the session, so the client is free again) or a `connect` function making a
 * new dedicated, connected client each time (`async () => { const c = new pg.Client(config); await
 * c.connect(); return c; }`, ended after the call). A pool's client returned by such a function
 * (`() => pool.connect()`) is given back at once and refused with `DtmUsageError`: pass the pool itself.
 */
export function pgXaDatabase<C extends PgXaPooledClientLike>(pool: PgXaPoolLike<C>): XaDatabase<C>;
/** PostgreSQL for XA branches, each call on a new client `connect` makes (see the overload taking a `pg` `Pool`). */
export function pgXaDatabase<C extends PgXaClientLike>(connect: () => Promise<C>): XaDatabase<C>;
export function pgXaDatabase(source: PgXaPoolLike | (() => Promise<PgXaClientLike>)): XaDatabase<unknown> {
  if (typeof source !== 'function') return pgXaPool(source);
  return {
    dialect: 'postgres',
    async connect() {
      const client = await source();
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

/**
 * XA branches on clients lent by `pool`. A client goes back to the pool only when the module says it
 * is clean (its transaction prepared, committed or rolled back, and no statement or connection error
 * on it); on any other path it is discarded (`release(true)`), so no session in an unknown state is
 * lent again. While lent it has an 'error' listener of its own (the pool's is off then).
 */
function pgXaPool(pool: PgXaPoolLike): XaDatabase<unknown> {
  if (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function') throw new DtmUsageError(MESSAGES.pgXaSourceInvalid());
  return {
    dialect: 'postgres',
    async connect() {
      const client = await pool.connect();
      // a pg.Client's connect() (a client given instead of a pool) lends nothing: refused, as any lender without release()
      if (typeof client?.release !== 'function' || typeof client.on !== 'function' || typeof client.removeListener !== 'function') throw new DtmUsageError(MESSAGES.pgXaSourceInvalid());
      let broken = false;
      const onError = (): void => {
        broken = true;
      };
      client.on('error', onError);
      return {
        handle: client,
        execute: (sql, params = []) => pgExecute(client, sql, params),
        async close(clean?: boolean) {
          client.removeListener('error', onError);
          client.release(clean === true && !broken ? undefined : true);
        },
      };
    },
  };
}
