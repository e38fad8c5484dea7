import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';
import type { BarrierDatabase, BarrierDialect, BarrierExecResult, BarrierTransaction } from './barrier.types.js';

/** The part of a TypeORM `QueryRunner` the barrier uses. */
export interface TypeormQueryRunnerLike {
  query(sql: string, params: unknown[] | undefined, useStructuredResult: true): Promise<{ affected?: number; records?: Record<string, unknown>[] }>;
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
 * `dataSource.transaction(...)`) or a `QueryRunner` after `startTransaction()`.
 */
export function typeormBarrierTransaction(
  managerOrRunner: TypeormEntityManagerLike | TypeormQueryRunnerLike,
  dialect: BarrierDialect,
): BarrierTransaction {
  // a QueryRunner can start transactions; an EntityManager carries the runner of its transaction
  const runner = 'startTransaction' in managerOrRunner ? (managerOrRunner as TypeormQueryRunnerLike) : (managerOrRunner as TypeormEntityManagerLike).queryRunner;
  if (!runner) throw new DtmUsageError(MESSAGES.typeormNoTransaction());
  return { dialect, execute: (sql, params) => typeormExecute(runner, sql, params) };
}

/** A TypeORM `DataSource` (postgres, mysql or mariadb) as a barrier database: your code gets the transactional EntityManager. */
export function typeormBarrierDatabase<D extends TypeormDataSourceLike<TypeormEntityManagerLike>>(dataSource: D): BarrierDatabase<D['manager']> {
  const dialect = typeormDialect(dataSource.options.type);
  return {
    dialect,
    transaction: (work, leading = []) =>
      dataSource.transaction(async (manager: D['manager']) => {
        const tx = typeormBarrierTransaction(manager, dialect);
        const leadingResults: BarrierExecResult[] = [];
        for (const statement of leading) leadingResults.push(await tx.execute(statement.sql, statement.params));
        return work(manager, tx, leadingResults);
      }),
    async execute(sql, params) {
      const runner = dataSource.createQueryRunner();
      try {
        return await typeormExecute(runner, sql, params);
      } finally {
        await runner.release();
      }
    },
  };
}

function typeormDialect(type: string): BarrierDialect {
  if (type === 'postgres') return 'postgres';
  if (type === 'mysql' || type === 'mariadb') return 'mysql';
  throw new DtmUsageError(MESSAGES.typeormUnsupported(type));
}

async function typeormExecute(runner: TypeormQueryRunnerLike, sql: string, params: unknown[]): Promise<BarrierExecResult> {
  const result = await runner.query(sql, params, true);
  return { affected: result.affected ?? 0, rows: result.records ?? [] };
}
