import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';
import type { BarrierDatabase, BarrierDialect, BarrierExecResult, BarrierTransaction, LocalTransactionBounds } from './barrier.types.js';
import { boundMysqlSessionOf, mysqlLockWaitSql, toExecResult } from './mysql-barrier.store.js';
import { assertPgCommitted, assertPgTransactionOpen, pgLocalBoundsSql, type PgClientLike } from './pg-barrier.store.js';

/** The part of a TypeORM `QueryRunner` the barrier uses. */
export interface TypeormQueryRunnerLike {
  query(sql: string, params: unknown[] | undefined, useStructuredResult: true): Promise<{ affected?: number; records?: Record<string, unknown>[] }>;
  /** The driver's connection of the runner (MySQL / MariaDB: a mysql2 connection, whose prepared statements the barrier uses). */
  connect?(): Promise<unknown>;
  /** Whether the runner's transaction is open (`startTransaction()` called, not yet committed or rolled back). */
  readonly isTransactionActive?: boolean;
}

/** The part of a callback-style mysql2 connection (what TypeORM's MySQL driver holds) the barrier uses. */
interface MysqlDriverConnection {
  execute(sql: string, params: unknown[], callback: (err: unknown, result: unknown) => void): void;
}

/** A TypeORM `EntityManager` inside a transaction (it carries its query runner). */
export interface TypeormEntityManagerLike {
  readonly queryRunner?: TypeormQueryRunnerLike;
}

/** The part of a TypeORM `DataSource` the barrier uses. */
export interface TypeormDataSourceLike<M extends TypeormEntityManagerLike = TypeormEntityManagerLike> {
  readonly options: { readonly type: string };
  /** The data source's manager: its type is what transactions hand out. */
  readonly manager: M;
  transaction<T>(work: (manager: M) => Promise<T>): Promise<T>;
  createQueryRunner(): TypeormQueryRunnerLike & { release(): Promise<void> };
}

/**
 * The barrier's view of your open TypeORM transaction: the transactional `EntityManager` (inside
 * `dataSource.transaction(...)`) or a `QueryRunner` after `startTransaction()`. A runner (or its
 * manager) with no transaction open is refused with `DtmUsageError` before the barrier writes
 * anything: its rows would commit on their own, whatever your business does.
 */
export function typeormBarrierTransaction(
  managerOrRunner: TypeormEntityManagerLike | TypeormQueryRunnerLike,
  dialect: BarrierDialect,
): BarrierTransaction {
  // a QueryRunner can start transactions; an EntityManager carries the runner of its transaction
  const runner = 'startTransaction' in managerOrRunner ? (managerOrRunner as TypeormQueryRunnerLike) : (managerOrRunner as TypeormEntityManagerLike).queryRunner;
  if (!runner) throw new DtmUsageError(MESSAGES.typeormNoTransaction());
  return {
    dialect,
    execute: (sql, params) => {
      if (runner.isTransactionActive === false) throw new DtmUsageError(MESSAGES.barrierTxNotOpen('typeormBarrierTransaction', 'Call startTransaction() on the QueryRunner (or pass the manager of dataSource.transaction(...))'));
      return typeormExecute(runner, dialect, sql, params);
    },
  };
}

/**
 * A TypeORM `DataSource` (postgres, mysql or mariadb) as a barrier database: your code gets the
 * transactional EntityManager. Lock waits are bounded as the other adapters bound them: PostgreSQL
 * with `SET LOCAL` (one statement after TypeORM's BEGIN), MySQL / MariaDB once per connection. On
 * PostgreSQL, a transaction a statement's caught error aborted is refused with `DtmUsageError`
 * before TypeORM's COMMIT (which would roll it back without an error), as `pgBarrierDatabase` does.
 */
export function typeormBarrierDatabase<D extends TypeormDataSourceLike<TypeormEntityManagerLike>>(dataSource: D): BarrierDatabase<D['manager']> {
  const dialect = typeormDialect(dataSource.options.type);
  return {
    dialect,
    async transaction(work, leading = [], bounds) {
      let commit: PgCommitWatch | undefined;
      try {
        const result = await dataSource.transaction(async (manager: D['manager']) => {
          await boundTypeormTransaction(manager.queryRunner, dialect, bounds);
          const tx = typeormBarrierTransaction(manager, dialect);
          const leadingResults: BarrierExecResult[] = [];
          for (const statement of leading) leadingResults.push(await tx.execute(statement.sql, statement.params));
          const answer = await work(manager, tx, leadingResults);
          if (dialect === 'postgres') commit = await watchPgCommit(manager.queryRunner);
          return answer;
        });
        assertPgCommitted(commit?.command);
        return result;
      } finally {
        commit?.restore();
      }
    },
    async execute(sql, params) {
      const runner = dataSource.createQueryRunner();
      try {
        return await typeormExecute(runner, dialect, sql, params);
      } finally {
        await runner.release();
      }
    },
  };
}

/**
 * PostgreSQL: what TypeORM's coming COMMIT on the runner's `pg` client is answered (TypeORM drops the
 * command tag, and PostgreSQL answers a COMMIT of a transaction a caught error aborted with
 * ROLLBACK, no error): the client's next `COMMIT` is watched, nothing is sent. Throws first when the
 * code ended the transaction itself.
 */
async function watchPgCommit(runner: TypeormQueryRunnerLike | undefined): Promise<PgCommitWatch | undefined> {
  const client = (await runner?.connect?.()) as PgClientLike | undefined;
  if (typeof client?.query !== 'function') return undefined;
  assertPgTransactionOpen(client);
  const own = Object.prototype.hasOwnProperty.call(client, 'query');
  const query = client.query;
  const watch: PgCommitWatch = {
    // the client goes back to TypeORM's pool after the COMMIT: as it was
    restore: () => {
      if (own) client.query = query;
      else delete (client as Partial<PgClientLike>).query;
    },
  };
  client.query = function (this: PgClientLike, ...args: Parameters<PgClientLike['query']>) {
    const answer = query.apply(this, args);
    if (args[0] !== 'COMMIT') return answer;
    watch.restore();
    return answer.then((result) => ((watch.command = result?.command), result));
  };
  return watch;
}

/** What {@link watchPgCommit} saw of the COMMIT, and how to stop watching. */
interface PgCommitWatch {
  command?: string;
  restore(): void;
}

/** Bounds the lock waits of the transaction `runner` has begun (see {@link typeormBarrierDatabase}). */
async function boundTypeormTransaction(runner: TypeormQueryRunnerLike | undefined, dialect: BarrierDialect, bounds: LocalTransactionBounds | undefined): Promise<void> {
  if (!runner || bounds?.timeoutSeconds === undefined) return;
  const run = (sql: string) => runner.query(sql, undefined, true);
  if (dialect === 'postgres') {
    await run(pgLocalBoundsSql(bounds)!);
    return;
  }
  // the session setting stays with the physical connection: once per connection, as mysqlBarrierDatabase does
  const connection = await runner.connect?.();
  await (typeof connection === 'object' && connection !== null ? boundMysqlSessionOf(connection, bounds, run) : run(mysqlLockWaitSql(bounds)!));
}

function typeormDialect(type: string): BarrierDialect {
  if (type === 'postgres') return 'postgres';
  if (type === 'mysql' || type === 'mariadb') return 'mysql';
  throw new DtmUsageError(MESSAGES.typeormUnsupported(type));
}

/**
 * Runs one statement on the runner's connection. On MySQL / MariaDB a statement with parameters is a
 * prepared statement on the driver's mysql2 connection, so the server binds them: TypeORM's
 * `query(sql, params)` goes through mysql2's `query`, which quotes them on the client with
 * backslash escapes, unsafe under the NO_BACKSLASH_ESCAPES sql_mode (see `mysqlExecute`).
 */
async function typeormExecute(runner: TypeormQueryRunnerLike, dialect: BarrierDialect, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  if (dialect === 'mysql' && params.length > 0) {
    const connection = (await runner.connect?.()) as MysqlDriverConnection | undefined;
    if (typeof connection?.execute !== 'function') throw new DtmUsageError(MESSAGES.typeormNoPreparedStatements());
    const result = await new Promise((resolve, reject) => connection.execute(sql, params, (err, answer) => (err ? reject(err as Error) : resolve(answer))));
    return toExecResult(result);
  }
  const result = await runner.query(sql, params, true);
  return { affected: result.affected ?? 0, rows: result.records ?? [] };
}
