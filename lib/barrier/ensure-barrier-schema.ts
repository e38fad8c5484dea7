import { barrierSchemaSql, DEFAULT_BARRIER_TABLE } from './barrier.sql.js';
import type { BarrierDatabase } from './barrier.types.js';

/**
 * Creates the barrier table (and its schema / database) if it does not exist yet; safe to call at
 * every start and from several processes at once (PostgreSQL: serialized with an advisory lock).
 */
export async function ensureBarrierSchema(db: BarrierDatabase, options: { table?: string } = {}): Promise<void> {
  const statements = barrierSchemaSql(db.dialect, options.table ?? DEFAULT_BARRIER_TABLE);
  if (db.dialect === 'postgres') {
    // concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalog
    await db.transaction(async (_handle, tx) => {
      await tx.execute("SELECT pg_advisory_xact_lock(hashtext('nestjs-dtm:barrier-schema'))", []);
      for (const sql of statements) await tx.execute(sql, []);
    });
    return;
  }
  for (const sql of statements) await db.execute(sql, []);
}
