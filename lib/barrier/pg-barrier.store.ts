import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import type { BarrierDatabase, BarrierExecResult, BarrierStatement, BarrierTransaction, LocalTransactionBounds } from './barrier.types.js';

/** What `pg` answers to one statement. */
interface PgResult {
  rowCount: number | null;
  rows: Record<string, unknown>[];
  /** The command tag's first word (`pg`: `INSERT`, `PREPARE`, `ROLLBACK` ...). */
  command?: string;
}

/** The part of a `pg` client (`PoolClient` or `Client`) the barrier uses. */
export interface PgClientLike {
  query(sql: string, params?: unknown[]): Promise<PgResult>;
  /** pg's own literal quoting: with it, BEGIN and the barrier's inserts go in one round trip. */
  escapeLiteral?(value: string): string;
  /** pg's transaction status from the server's last ReadyForQuery (`T` in a transaction, `E` in a failed one, `I` in none). */
  getTransactionStatus?(): string | null;
}

/** The part of a `pg` `Pool` the barrier uses. */
export interface PgPoolLike<C extends PgClientLike> extends PgClientLike {
  connect(): Promise<C & PgLentClientLike>;
}

/** What the barrier uses of a client a `pg` pool lent. */
export interface PgLentClientLike {
  /** Gives the client back to its pool; with an error, the pool closes it. */
  release(err?: Error | boolean): void;
  /** `pg` emits `'error'` on a client whose connection broke while no query was running on it. */
  on?(event: 'error', listener: (err: Error) => void): unknown;
  /** Removes a listener {@link on} added. */
  removeListener?(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * The barrier's view of a `pg` client inside your open transaction (`BEGIN` already sent). A pool,
 * or a client with no transaction open (pg's transaction status `I`), is refused with
 * `DtmUsageError` before the barrier writes anything: its rows would commit on their own, whatever
 * your business does.
 */
export function pgBarrierTransaction(client: PgClientLike): BarrierTransaction {
  if (isPgPool(client)) throw new DtmUsageError(MESSAGES.barrierTxIsPool('pgBarrierTransaction', 'the client you sent BEGIN on (const client = await pool.connect())'));
  return {
    dialect: 'postgres',
    execute: (sql, params) => {
      if (typeof client.getTransactionStatus === 'function' && client.getTransactionStatus() === 'I') throw new DtmUsageError(MESSAGES.barrierTxNotOpen('pgBarrierTransaction', "Send BEGIN on the client and wait for its answer (await client.query('BEGIN'))"));
      return pgExecute(client, sql, params);
    },
  };
}

/** Whether `client` is a `pg` pool (each of its queries on a pooled client of its own, committed at once), not a client. */
function isPgPool(client: PgClientLike): boolean {
  return typeof (client as Partial<PgPoolLike<PgClientLike>>).connect === 'function' && 'totalCount' in client && 'idleCount' in client;
}

/**
 * Whether `db` is a `pg` client (a `pg.Client`, or a client a pool lent), not a pool: a client has
 * pg's transaction status or process id and no pool counts (read once, where the database is made).
 */
function isPgClient(db: object): boolean {
  if (isPgPool(db as PgClientLike)) return false;
  return typeof (db as { getTransactionStatus?: unknown }).getTransactionStatus === 'function' || 'processID' in db || typeof (db as { release?: unknown }).release === 'function';
}

/** {@link pgBarrierTransaction} of a client this module sent the BEGIN on itself (no check). */
function ownPgTransaction(client: PgClientLike): BarrierTransaction {
  return { dialect: 'postgres', execute: (sql, params) => pgExecute(client, sql, params) };
}

/**
 * A `pg` pool as a barrier database: transactions on one pooled client, handed to your code. The
 * barrier's inserts are sent with the BEGIN, in one simple query with pg's own literal quoting, so
 * the barrier costs no extra round trip; so are the transaction's `lock_timeout` and
 * `statement_timeout` (`SET LOCAL`, from the branch timeout), so no client waits on a lock after
 * DTM gave up on the call. A transaction that did not commit (a statement's caught error aborted it,
 * and PostgreSQL answers its COMMIT with ROLLBACK, no error; or the code ended it) is `DtmUsageError`,
 * never a resolved call.
 */
export function pgBarrierDatabase<C extends PgClientLike>(pool: PgPoolLike<C>): BarrierDatabase<C> {
  if (typeof pool === 'object' && pool !== null && isPgClient(pool)) throw new DtmUsageError(MESSAGES.pgBarrierDatabaseClient());
  return {
    dialect: 'postgres',
    async transaction<T>(
      work: (client: C, tx: BarrierTransaction, leading: BarrierExecResult[]) => Promise<T>,
      leading: BarrierStatement[] = [],
      bounds?: LocalTransactionBounds,
    ): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      // the server may end the session while the work awaits something else (pg_terminate_backend,
      // idle_in_transaction_session_timeout, a failover): pg then emits 'error' on the client, which
      // its pool does not listen to while the client is lent, so unheard it would end the process
      const onError = (err: Error) => (broken ??= err);
      client.on?.('error', onError);
      try {
        const leadingResults = await begin(client, leading, bounds);
        const result = await work(client, ownPgTransaction(client), leadingResults);
        assertPgTransactionOpen(client);
        assertPgCommitted((await client.query('COMMIT'))?.command);
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw err;
      } finally {
        client.removeListener?.('error', onError);
        client.release(broken);
      }
    },
    execute: (sql, params) => pgExecute(pool, sql, params),
  };
}

/**
 * Throws `DtmUsageError` when the `pg` client's transaction was ended by the code before its COMMIT
 * (the status the server sent with its last answer, `I`: no round trip; clients without it pass):
 * its COMMIT would commit nothing and answer no error.
 */
export function assertPgTransactionOpen(client: { getTransactionStatus?(): string | null }): void {
  if (typeof client.getTransactionStatus === 'function' && client.getTransactionStatus() === 'I') {
    throw new DtmUsageError(MESSAGES.pgTransactionEndedByBusiness());
  }
}

/**
 * Throws `DtmUsageError` when PostgreSQL answered a COMMIT with the tag `ROLLBACK`: it does so, with
 * no error, for a transaction a statement's error aborted (a caught unique violation, say).
 */
export function assertPgCommitted(command: string | undefined): void {
  if (command === 'ROLLBACK') throw new DtmUsageError(MESSAGES.pgTransactionNotCommitted('its COMMIT answered ROLLBACK: a statement in it had failed'));
}

/** Runs one statement on a `pg` client or pool (also the XA adapter's). */
export async function pgExecute(client: PgClientLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  return toExecResult(await client.query(sql, params));
}

function toExecResult(result: PgResult): BarrierExecResult {
  return { affected: result.rowCount ?? 0, rows: result.rows ?? [], command: result.command };
}

/**
 * `BEGIN` with the transaction's bounds (`SET LOCAL lock_timeout` and `statement_timeout`), as one
 * simple query (no parameters); also the XA adapter's start. The value is a whole number of
 * milliseconds, checked here: nothing else goes into the SQL.
 */
export function pgBeginSql(bounds?: LocalTransactionBounds): string {
  const local = pgLocalBoundsSql(bounds);
  return local === undefined ? 'BEGIN' : `BEGIN; ${local}`;
}

/** The `SET LOCAL` statements of the transaction's bounds (undefined without bounds), for a transaction already begun (adapters of other client libraries). */
export function pgLocalBoundsSql(bounds?: LocalTransactionBounds): string | undefined {
  const seconds = bounds?.timeoutSeconds;
  if (seconds === undefined) return undefined;
  if (!Number.isInteger(seconds) || seconds <= 0) throw new TypeError(`timeoutSeconds must be a positive whole number, got ${String(seconds)}`);
  const ms = `'${seconds * 1000}ms'`;
  return `SET LOCAL lock_timeout = ${ms}; SET LOCAL statement_timeout = ${ms}`;
}

/** BEGIN (with its bounds), then `leading`: in one round trip when the client can quote literals. */
async function begin(client: PgClientLike, leading: BarrierStatement[], bounds?: LocalTransactionBounds): Promise<BarrierExecResult[]> {
  const beginSql = pgBeginSql(bounds);
  const quote = client.escapeLiteral?.bind(client);
  if (leading.length === 0 || !quote) {
    await client.query(beginSql);
    const results: BarrierExecResult[] = [];
    for (const statement of leading) results.push(await pgExecute(client, statement.sql, statement.params));
    return results;
  }
  // the barrier's own statements: $n placeholders only, string parameters
  const inline = (s: BarrierStatement) => s.sql.replace(/\$(\d+)/g, (_, n: string) => quote(String(s.params[Number(n) - 1])));
  const answers = (await client.query([beginSql, ...leading.map(inline)].join('; '))) as unknown as PgResult[];
  return answers.slice(answers.length - leading.length).map(toExecResult);
}
