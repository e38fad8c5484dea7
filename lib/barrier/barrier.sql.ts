import { createHash } from 'node:crypto';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { MESSAGES } from '../dtm.messages.js';
import type { BarrierDialect } from './barrier.types.js';
import { messageOf } from '../errors/text-of.js';

/** The barrier table DTM's SDKs use unless told otherwise. */
export const DEFAULT_BARRIER_TABLE = 'dtm_barrier.barrier';

// each part at most 63 characters: PostgreSQL cuts a longer name without a word (two names could be one table), MySQL / MariaDB refuse one over 64
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;

/** Whether `table` is `name` or `schema.name` made of letters, digits and `_`, each part at most 63 characters (it is quoted into SQL as it is). */
export function isBarrierTableName(table: unknown): table is string {
  return typeof table === 'string' && IDENTIFIER.test(table);
}

/** Throws unless {@link isBarrierTableName}. */
export function assertBarrierTable(table: string): void {
  if (!isBarrierTableName(table)) throw new DtmUsageError(MESSAGES.badBarrierTable(table));
}

const quotedCache = new Map<string, string>();

/**
 * The barrier table `table` (`name` or `schema.name`, checked) as it goes into SQL: each part quoted,
 * so that a reserved word (`order`, `user`) is a name too. PostgreSQL: `"name"` in lower case, the
 * table PostgreSQL folds the name to unquoted, so `Barrier` is still the table `barrier`; MySQL /
 * MariaDB: `` `name` ``, which folds nothing there either.
 */
export function quotedBarrierTable(dialect: BarrierDialect, table: string): string {
  const key = `${dialect}:${table}`;
  let quoted = quotedCache.get(key);
  if (!quoted) {
    assertBarrierTable(table);
    quoted = table
      .split('.')
      .map((part) => (dialect === 'postgres' ? `"${part.toLowerCase()}"` : `\`${part}\``))
      .join('.');
    quotedCache.set(key, quoted);
  }
  return quoted;
}

const insertCache = new Map<string, string>();

/**
 * The insert-ignore of one barrier row (`trans_type, gid, branch_id, op, barrier_id, reason`): its
 * affected count is 1 if it inserted the row, 0 if the row was there. On PostgreSQL the conflict
 * is named by the key columns, not by a constraint, so any unique key on them will do: the one
 * {@link barrierSchemaSql} names after the table, and DTM's own `uniq_barrier`. Built once per table.
 */
export function insertBarrierSql(dialect: BarrierDialect, table: string): string {
  const key = `${dialect}:${table}`;
  let sql = insertCache.get(key);
  if (!sql) {
    const columns = '(trans_type, gid, branch_id, op, barrier_id, reason)';
    const into = quotedBarrierTable(dialect, table);
    sql =
      dialect === 'postgres'
        ? `INSERT INTO ${into} ${columns} VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (gid, branch_id, op, barrier_id) DO NOTHING`
        : `INSERT IGNORE INTO ${into} ${columns} VALUES (?, ?, ?, ?, ?, ?)`;
    insertCache.set(key, sql);
  }
  return sql;
}

/** PostgreSQL's longest identifier, in bytes (a longer one is cut, so two could become one). */
const PG_MAX_IDENTIFIER = 63;

/**
 * The PostgreSQL key constraint name DTM's SDKs name in their insert (`ON CONSTRAINT uniq_barrier`):
 * a barrier table shared with services on DTM's Go SDK must have it.
 */
export const PG_BARRIER_CONSTRAINT = 'uniq_barrier';

/**
 * A PostgreSQL key constraint name of the barrier table `table` of its own, for when
 * {@link PG_BARRIER_CONSTRAINT} is taken in its schema (index names share one namespace per schema):
 * `uniq_<name>`; a name that would be over 63 bytes is cut and ends with a hash of the whole name,
 * so two long table names still get two names.
 */
export function barrierConstraintName(table: string): string {
  const name = `uniq_${table.includes('.') ? table.split('.')[1] : table}`;
  if (name.length <= PG_MAX_IDENTIFIER) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, PG_MAX_IDENTIFIER - hash.length - 1)}_${hash}`;
}

/** The reason of one barrier row. */
export function selectReasonSql(dialect: BarrierDialect, table: string): string {
  const from = quotedBarrierTable(dialect, table);
  return dialect === 'postgres'
    ? `SELECT reason FROM ${from} WHERE gid = $1 AND branch_id = $2 AND op = $3 AND barrier_id = $4`
    : `SELECT reason FROM ${from} WHERE gid = ? AND branch_id = ? AND op = ? AND barrier_id = ?`;
}

/** The delete of one barrier row (`gid, branch_id, op, barrier_id`): a row written outside a transaction, undone. */
export function deleteBarrierSql(dialect: BarrierDialect, table: string): string {
  const from = quotedBarrierTable(dialect, table);
  return dialect === 'postgres'
    ? `DELETE FROM ${from} WHERE gid = $1 AND branch_id = $2 AND op = $3 AND barrier_id = $4`
    : `DELETE FROM ${from} WHERE gid = ? AND branch_id = ? AND op = ? AND barrier_id = ?`;
}

/** The barrier's key columns, with their lengths: together the unique key of a barrier row. */
export const BARRIER_KEY_COLUMNS = [
  ['gid', 128],
  ['branch_id', 128],
  ['op', 45],
  ['barrier_id', 45],
] as const;

/**
 * The barrier table's DDL, idempotent: the columns DTM's SDKs write, and their unique key, which is
 * the primary key (PostgreSQL: named `uniq_barrier`, as DTM's SDKs name it in their insert;
 * `ensureBarrierSchema` names it after the table when a table of the schema has that name
 * already; this library's insert names the key columns instead, so it works with either). No
 * surrogate id and no other index, so a barrier insert maintains one B-tree: the table is written on every branch call.
 * To purge old rows by `create_time`, add an index on it first. `sql/` holds these statements for
 * the default table. On MySQL / MariaDB the key columns are binary strings (`varbinary`), compared
 * byte for byte: a character column's collation would make `Order-7` and `order-7`, `é` and `e`,
 * or `x` and `x ` the same key (utf8mb4_bin too ignores trailing spaces), and the second branch
 * would be skipped as a duplicate. PostgreSQL compares `varchar` exactly.
 */
export function barrierSchemaSql(dialect: BarrierDialect, table = DEFAULT_BARRIER_TABLE): string[] {
  return barrierSchemaStatements(dialect, table, PG_BARRIER_CONSTRAINT);
}

/** {@link barrierSchemaSql} with the PostgreSQL key constraint named `constraint` (`ensureBarrierSchema` picks it). */
export function barrierSchemaStatements(dialect: BarrierDialect, table: string, constraint: string): string[] {
  const name = quotedBarrierTable(dialect, table);
  const schema = table.includes('.') ? name.slice(0, name.indexOf('.')) : undefined;
  const key = dialect === 'postgres' ? 'varchar' : 'varbinary';
  const columns = `  trans_type varchar(45) NOT NULL DEFAULT '',
${BARRIER_KEY_COLUMNS.map(([name, length]) => `  ${name} ${key}(${length}) NOT NULL DEFAULT '',`).join('\n')}
  reason varchar(45) NOT NULL DEFAULT '',`;
  if (dialect === 'postgres') {
    return [
      ...(schema ? [`CREATE SCHEMA IF NOT EXISTS ${schema}`] : []),
      `CREATE TABLE IF NOT EXISTS ${name} (
${columns}
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT ${constraint} PRIMARY KEY (gid, branch_id, op, barrier_id)
)`,
    ];
  }
  return [
    ...(schema ? [`CREATE DATABASE IF NOT EXISTS ${schema}`] : []),
    `CREATE TABLE IF NOT EXISTS ${name} (
${columns}
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (gid, branch_id, op, barrier_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4`,
  ];
}

/**
 * MySQL / MariaDB: the ALTER that makes an existing barrier table's key columns binary strings (see
 * {@link barrierSchemaSql}). It rebuilds the table; rows whose gid or branch id is over 128 bytes
 * (possible only for non-ASCII ids) must be removed first.
 */
export function barrierBinaryKeysSql(table = DEFAULT_BARRIER_TABLE): string {
  return `ALTER TABLE ${quotedBarrierTable('mysql', table)}\n${BARRIER_KEY_COLUMNS.map(([name, length]) => `  MODIFY ${name} varbinary(${length}) NOT NULL DEFAULT ''`).join(',\n')}`;
}

/** Errors of a statement the database user may not run on the table: PostgreSQL `42501`, MySQL / MariaDB `ER_TABLEACCESS_DENIED_ERROR` (1142). */
const NO_PERMISSION = new Set<unknown>(['42501', 'ER_TABLEACCESS_DENIED_ERROR', 1142]);

/**
 * Errors of a write to a read-only database: PostgreSQL `25006` (a read-only transaction or session, a
 * standby), MySQL / MariaDB `read_only` (`ER_OPTION_PREVENTS_STATEMENT`, 1290), a read-only
 * transaction (1792) or InnoDB in read-only mode (1836).
 */
const READ_ONLY = new Set<unknown>(['25006', 'ER_OPTION_PREVENTS_STATEMENT', 1290, 'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION', 1792, 'ER_READ_ONLY_MODE', 1836]);

/** Errors of a statement on a table that does not exist: PostgreSQL `42P01`, MySQL / MariaDB `ER_NO_SUCH_TABLE` (1146). */
const NO_TABLE = new Set<unknown>(['42P01', 'ER_NO_SUCH_TABLE', 1146]);

/**
 * Why the database refused a barrier statement, when the refusal is the database user's
 * (`permission`: a privilege not granted), the database's (`read-only`) or the table's absence
 * (`no-table`); undefined for any other error.
 */
export function barrierWriteRefusal(err: unknown): 'permission' | 'read-only' | 'no-table' | undefined {
  const e = err as { code?: unknown; errno?: unknown } | null | undefined;
  if (NO_PERMISSION.has(e?.code) || NO_PERMISSION.has(e?.errno)) return 'permission';
  if (READ_ONLY.has(e?.code) || READ_ONLY.has(e?.errno)) return 'read-only';
  if (NO_TABLE.has(e?.code) || NO_TABLE.has(e?.errno)) return 'no-table';
  return undefined;
}

/**
 * `err` of a barrier statement as its caller gets it: the database's refusal of the barrier table
 * `table` ({@link barrierWriteRefusal}) is a `DtmUsageError` naming the table and what to do, with
 * `err` as its cause; any other error as it is. `step` says what the refused statement belonged to.
 */
export function barrierStatementError(
  err: unknown,
  table: string,
  dialect: BarrierDialect,
  context: { gid: string; branchId: string },
  step?: 'call' | 'xa-action' | 'xa-phase2',
): unknown {
  const refusal = barrierWriteRefusal(err);
  if (refusal === undefined) return err;
  const reason = messageOf(err);
  return new DtmUsageError(MESSAGES.barrierStatementRefused(table, dialect, refusal, reason, step), { ...context, cause: err });
}
