import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { BARRIER_KEY_COLUMNS, barrierBinaryKeysSql, barrierConstraintName, barrierSchemaSql, barrierSchemaStatements, DEFAULT_BARRIER_TABLE, PG_BARRIER_CONSTRAINT } from './barrier.sql.js';
import type { BarrierDatabase } from './barrier.types.js';

/**
 * Creates the barrier table (and its schema / database) if it does not exist yet; safe to call at
 * every start and from several processes at once (PostgreSQL: serialized with an advisory lock).
 * On PostgreSQL the key constraint is `uniq_barrier`, as DTM's SDKs expect, unless that name is
 * taken in the schema (index names share one namespace per schema: a second barrier table there):
 * then `uniq_<table name>` (services on DTM's Go SDK can use only the table with `uniq_barrier`).
 * On MySQL / MariaDB it then checks that the table's key columns are binary strings, and throws
 * `DtmUsageError` with the ALTER to run when they are not (a table created before: its collation
 * makes ids that differ in case, accents or trailing spaces one key).
 */
export async function ensureBarrierSchema(db: BarrierDatabase, options: { table?: string } = {}): Promise<void> {
  const table = options.table ?? DEFAULT_BARRIER_TABLE;
  if (db.dialect === 'postgres') {
    // concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalog
    await db.transaction(async (_handle, tx) => {
      await tx.execute("SELECT pg_advisory_xact_lock(hashtext('nestjs-dtm:barrier-schema'))", []);
      // uniq_barrier (what DTM's Go SDK names in its insert) unless another table of the schema has it
      const schema = table.includes('.') ? table.split('.')[0] : null;
      const { rows } = await tx.execute(
        'SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND n.nspname = COALESCE(lower($2), current_schema())',
        [PG_BARRIER_CONSTRAINT, schema],
      );
      const constraint = rows.length === 0 ? PG_BARRIER_CONSTRAINT : barrierConstraintName(table);
      for (const sql of barrierSchemaStatements('postgres', table, constraint)) await tx.execute(sql, []);
    });
    return;
  }
  const statements = barrierSchemaSql(db.dialect, table);
  for (const sql of statements) await db.execute(sql, []);
  await assertBarrierKeysBinary(db, table);
}

/**
 * MySQL / MariaDB: throws `DtmUsageError` naming the ALTER to run when the barrier table `table`
 * keeps a key column in a character column (a table of an earlier version, or one made with DTM's
 * own `dtmcli.barrier.mysql.sql`): its collation makes ids that differ in case, accents or trailing
 * spaces one key. Asked of `information_schema`; a column it does not list is not judged here.
 */
export async function assertBarrierKeysBinary(db: BarrierDatabase, table: string): Promise<void> {
  const [schema, name] = table.includes('.') ? table.split('.') : [undefined, table];
  const { rows } = await db.execute(
    `SELECT COLUMN_NAME AS name, DATA_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ${schema ? '?' : 'DATABASE()'} AND TABLE_NAME = ?`,
    schema ? [schema, name] : [name],
  );
  const types = new Map(rows.map((row) => [String(row.name).toLowerCase(), String(row.type).toLowerCase()]));
  const textual = BARRIER_KEY_COLUMNS.map(([column]) => column).filter((column) => types.has(column) && !['varbinary', 'binary'].includes(types.get(column)!));
  if (textual.length > 0) throw new DtmUsageError(MESSAGES.barrierKeysNotBinary(table, textual, barrierBinaryKeysSql(table)));
}
