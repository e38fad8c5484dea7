import { insertBarrierSql } from '../barrier/barrier.sql.js';
import type { BarrierDialect } from '../barrier/barrier.types.js';
import type { BranchInfo } from '../transport/dtm.types.js';
import type { DtmTransport } from '../transport/dtm-transport.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import type { XaConnection, XaDatabase } from './xa.types.js';

/** Longest XA id each database takes (MySQL: the gtrid, 64 bytes; PostgreSQL: the GID, 199). */
const MAX_XID_BYTES: Record<BarrierDialect, number> = { mysql: 64, postgres: 199 };
/** XA statements take no parameters: the id is quoted into the SQL, so only these characters may be in it. */
const XID_CHARS = /^[A-Za-z0-9._:@=-]+$/;

/** What the local XA transaction needs from the module (internal). */
export interface XaRuntime {
  /** Where the branch registers itself: the transport of the protocol the call came in on, to the module's own DTM server. */
  readonly transport: DtmTransport;
  readonly config: DtmConfig;
}

/** The XA id of a branch: `<gid>-<branch_id>`, checked against the database's limit. */
export function xidOf(branch: Pick<BranchInfo, 'gid' | 'branchId'>, dialect: BarrierDialect): string {
  const xid = `${branch.gid}-${branch.branchId}`;
  if (!XID_CHARS.test(xid)) throw new DtmFailureError(MESSAGES.xidChars(xid), { gid: branch.gid, branchId: branch.branchId });
  const bytes = Buffer.byteLength(xid);
  if (bytes > MAX_XID_BYTES[dialect]) {
    throw new DtmFailureError(MESSAGES.xidTooLong(xid, bytes, dialect, MAX_XID_BYTES[dialect]), { gid: branch.gid, branchId: branch.branchId });
  }
  return xid;
}

/**
 * The resource manager's side of an XA branch, as DTM's SDKs run it. For `op=action`: on a
 * dedicated connection, XA START (PostgreSQL: BEGIN), the barrier row DTM's SDK writes, `business`,
 * then the branch is registered with DTM (its phase-2 URL) before XA END + XA PREPARE (PREPARE
 * TRANSACTION); on any error the branch is rolled back and the error rethrown, so the transaction
 * aborts. For `op=commit|rollback`: XA COMMIT|ROLLBACK (COMMIT|ROLLBACK PREPARED), idempotent (an
 * unknown id is success), and after a rollback the barrier row with reason `rollback`; `business`
 * does not run. The connection is closed on every path.
 */
export async function xaLocalTransaction<H, T>(
  runtime: XaRuntime,
  branch: BranchInfo,
  db: XaDatabase<H>,
  business: (handle: H) => Promise<T>,
): Promise<T | undefined> {
  const xid = xidOf(branch, db.dialect);
  const row: XaBarrierRow = { transType: 'xa', gid: branch.gid, branchId: branch.branchId, table: runtime.config.barrierTable };
  if (branch.op === 'commit' || branch.op === 'rollback') {
    await finishXa(db, xid, branch.op === 'commit', row);
    return undefined;
  }
  if (branch.op !== 'action') throw new DtmUsageError(MESSAGES.xaBadOp(branch.op), { gid: branch.gid, branchId: branch.branchId });
  const phase2Url = branch.phase2Url;
  if (!phase2Url) throw new DtmUsageError(MESSAGES.xaNoPhase2Url(), { gid: branch.gid, branchId: branch.branchId });
  return prepareXa(db, xid, row, business, () =>
    runtime.transport.registerBranch({ gid: branch.gid, transType: 'xa', branchId: branch.branchId, fields: { url: phase2Url } }),
  );
}

/** The barrier row an XA branch writes: `(transType, gid, branchId, action, 01)`, in `table`. */
export interface XaBarrierRow {
  transType: string;
  gid: string;
  branchId: string;
  table: string;
}

/**
 * Phase 1 of a local XA transaction on a dedicated connection of `db`: XA START (PostgreSQL:
 * BEGIN), the barrier row DTM's SDK writes (reason `action`), `business`, then `beforePrepare`
 * (registering the branch), then XA END + XA PREPARE (PREPARE TRANSACTION). On any error the work
 * is rolled back and the error rethrown. The connection is closed on every path.
 */
export async function prepareXa<H, T>(db: XaDatabase<H>, xid: string, row: XaBarrierRow, business: (handle: H) => Promise<T>, beforePrepare: () => Promise<unknown>): Promise<T> {
  const mysql = db.dialect === 'mysql';
  const conn = await db.connect();
  try {
    await conn.execute(mysql ? `XA START '${xid}'` : 'BEGIN');
    let result: T;
    try {
      await conn.execute(insertBarrierSql(db.dialect, row.table), [row.transType, row.gid, row.branchId, 'action', '01', 'action']);
      result = await business(conn.handle);
      await beforePrepare();
    } catch (err) {
      await abandon(conn, mysql, xid);
      throw err;
    }
    if (mysql) {
      await conn.execute(`XA END '${xid}'`);
      await conn.execute(`XA PREPARE '${xid}'`);
    } else {
      await conn.execute(`PREPARE TRANSACTION '${xid}'`);
    }
    return result;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function abandon(conn: XaConnection, mysql: boolean, xid: string): Promise<void> {
  const statements = mysql ? [`XA END '${xid}'`, `XA ROLLBACK '${xid}'`] : ['ROLLBACK'];
  for (const sql of statements) await conn.execute(sql).catch(() => undefined);
}

/**
 * Phase 2: XA COMMIT|ROLLBACK (COMMIT|ROLLBACK PREPARED), idempotent (an unknown id is done);
 * after a rollback the barrier row with reason `rollback`, which marks that the rollback happened
 * after the branch's prepare (or instead of it).
 */
export async function finishXa(db: XaDatabase, xid: string, commit: boolean, row: XaBarrierRow): Promise<void> {
  const sql = db.dialect === 'mysql' ? `XA ${commit ? 'COMMIT' : 'ROLLBACK'} '${xid}'` : `${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED '${xid}'`;
  const conn = await db.connect();
  try {
    try {
      await conn.execute(sql);
    } catch (err) {
      // a repeated phase 2 (or a rollback of a branch that never prepared): already done
      if (!/XAER_NOTA|does not exist/.test(String((err as Error)?.message ?? err))) throw err;
    }
    if (!commit) await conn.execute(insertBarrierSql(db.dialect, row.table), [row.transType, row.gid, row.branchId, 'action', '01', 'rollback']);
  } finally {
    await conn.close().catch(() => undefined);
  }
}
