import { setTimeout as delay } from 'node:timers/promises';
import { Logger, UnauthorizedException } from '@nestjs/common';
import { barrierStatementError, insertBarrierSql, selectReasonSql } from '../barrier/barrier.sql.js';
import type { BarrierDialect, BarrierExecResult, LocalTransactionBounds } from '../barrier/barrier.types.js';
import { mysqlLockWaitSql } from '../barrier/mysql-barrier.store.js';
import { pgBeginSql, pgLocalBoundsSql } from '../barrier/pg-barrier.store.js';
import type { BranchInfo } from '../transport/dtm.types.js';
import type { DtmTransport } from '../transport/dtm-transport.js';
import type { DtmConfig } from '../config/dtm-config.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmXaPhase2Error } from '../errors/dtm-xa-phase2.error.js';
import { branchKeysProblem } from '../transport/branch-keys.js';
import type { XaConnection, XaDatabase } from './xa.types.js';
import { textOf } from '../errors/text-of.js';
import { refusal } from '../branches/branch-call.js';

/** Longest XA id each database takes (MySQL: the gtrid, 64 bytes; PostgreSQL: the GID, 199). */
const MAX_XID_BYTES: Record<BarrierDialect, number> = { mysql: 64, postgres: 199 };

/** What the local XA transaction needs from the module (internal). */
export interface XaRuntime {
  /** Where the branch registers itself: the transport of the protocol the call came in on, to the module's own DTM server. */
  readonly transport: DtmTransport;
  readonly config: DtmConfig;
}

/**
 * The XA id of a branch: `<gid>-<branch_id>`, checked against the database's limit. XA statements
 * take no parameters (MySQL's XA START / END / PREPARE / COMMIT / ROLLBACK cannot be prepared, nor
 * can PostgreSQL's PREPARE TRANSACTION / COMMIT PREPARED), so the id is quoted into the SQL as
 * `'<xid>'`. It is safe by construction: the gid and branch id follow the rule of branch keys
 * (checked here again), which leaves printable ASCII without quotes or backslashes, the only
 * characters that could end or escape the literal, whatever MySQL's sql_mode or PostgreSQL's
 * standard_conforming_strings.
 */
export function xidOf(branch: Pick<BranchInfo, 'gid' | 'branchId'>, dialect: BarrierDialect): string {
  const problem = branchKeysProblem(branch.gid, branch.branchId);
  if (problem !== undefined) throw new DtmFailureError(MESSAGES.branchKeysRefused(problem), { gid: branch.gid, branchId: branch.branchId });
  const xid = `${branch.gid}-${branch.branchId}`;
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
 * aborts. For `op=commit|rollback`: {@link finishXa}; `business` does not run. The connection is
 * closed on every path.
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
  return prepareXa(
    db,
    xid,
    row,
    business,
    () => runtime.transport.registerBranch({ gid: branch.gid, transType: 'xa', branchId: branch.branchId, fields: { url: phase2Url } }),
    { timeoutSeconds: runtime.config.branchTimeout },
    { once: runtime.config.branchAuthCheckActions },
  );
}

/**
 * The barrier id of the row an XA action call writes, committed before its XA transaction starts,
 * with `branch_auth_check_actions` (`(xa, gid, branch, action, 00, call)`): a second call of the
 * same branch (a replay while the transaction is still prepared, whatever became of the first)
 * finds it and is refused. DTM's SDKs number barrier ids from 01, so no barrier row takes it.
 */
const XA_CALL_BARRIER_ID = '00';

const logger = new Logger('DtmBranchAuth');

/** The barrier row an XA branch writes: `(transType, gid, branchId, action, 01)`, in `table`. */
export interface XaBarrierRow {
  transType: string;
  gid: string;
  branchId: string;
  table: string;
}

/** The step of the module's own (not the handler's business) each error of a local XA transaction's phase 1 came from. */
const MODULE_STEPS = new WeakMap<object, string>();

/** The step of the module's local XA transaction `err` came from (the connection, XA START, PREPARE, ...); undefined for the business's own error. */
export function xaModuleStepOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? MODULE_STEPS.get(err) : undefined;
}

/**
 * Phase 1 of a local XA transaction on a dedicated connection of `db`: XA START (PostgreSQL:
 * BEGIN), the barrier row DTM's SDK writes (reason `action`), `business`, then `beforePrepare`
 * (registering the branch), then XA END + XA PREPARE (PREPARE TRANSACTION). On any error the work
 * is rolled back and the error rethrown. A PREPARE TRANSACTION that prepared nothing (the
 * transaction had failed: `business` caught an SQL error) is a {@link DtmFailureError}. The
 * connection is closed on every path. With `bounds`, statements wait for locks no longer than the
 * branch timeout. `call`: the phase 1 of an XA action call (not a workflow's `xa` step), which may
 * be a second call of its branch ({@link XaActionCall}).
 */
export async function prepareXa<H, T>(
  db: XaDatabase<H>,
  xid: string,
  row: XaBarrierRow,
  business: (handle: H) => Promise<T>,
  beforePrepare: () => Promise<unknown>,
  bounds?: LocalTransactionBounds,
  call?: XaActionCall,
): Promise<T> {
  const mysql = db.dialect === 'mysql';
  // the module's step under way: an error of it is named so, not taken for the business's ('' while the business runs)
  let step = 'connection to the XA database';
  try {
    const conn = await db.connect();
    let clean = false; // the session left with nothing open: a pool may lend it again
    try {
      if (call?.once) {
        // autocommit, before the XA transaction: the row stays whatever becomes of it
        step = 'barrier row of the call';
        const claimed = await conn.execute(insertBarrierSql(db.dialect, row.table), [row.transType, row.gid, row.branchId, 'action', XA_CALL_BARRIER_ID, 'call']).catch((err: unknown) => {
          throw barrierStatementError(err, row.table, db.dialect, { gid: row.gid, branchId: row.branchId }, 'xa-action');
        });
        if (claimed.affected === 0) {
          step = '';
          const message = MESSAGES.authXaCalledBefore(row.gid, row.branchId, xid, row.table);
          logger.warn(message);
          throw refusal(new UnauthorizedException(message));
        }
      }
      // lock waits bounded by the branch timeout (PostgreSQL: in the BEGIN's query; MySQL: the new connection's session)
      const lockWait = mysql ? mysqlLockWaitSql(bounds) : undefined;
      step = mysql ? 'XA START' : 'BEGIN';
      if (lockWait) await conn.execute(lockWait); // a new connection each call: one statement more on MySQL
      const refused = (err: unknown) => barrierStatementError(err, row.table, db.dialect, { gid: row.gid, branchId: row.branchId }, 'xa-action');
      // a second call of the branch: its first one holds the XA id (MySQL) or the barrier row (PostgreSQL), prepared or running
      const secondCall = (err: unknown) => (call && isHeldBranch(err, mysql) ? new DtmFailureError(MESSAGES.xaBranchHeld(row.gid, row.branchId, xid), { gid: row.gid, branchId: row.branchId, cause: err }) : err);
      if (mysql || !call) {
        await conn.execute(mysql ? `XA START '${xid}'` : pgBeginSql(bounds)).catch((err: unknown) => {
          throw secondCall(err);
        });
      } else {
        // an action call on PostgreSQL: BEGIN and the barrier row in one round trip, the row waiting a second at most
        step = 'BEGIN and barrier row';
        await conn.execute(pgXaCallBeginSql(row, bounds)).catch((err: unknown) => {
          throw secondCall(refused(err));
        });
      }
      let result: T;
      try {
        if (mysql || !call) {
          step = 'barrier row';
          await conn.execute(insertBarrierSql(db.dialect, row.table), [row.transType, row.gid, row.branchId, 'action', '01', 'action']).catch((err: unknown) => {
            throw refused(err);
          });
        }
        step = '';
        result = await business(conn.handle);
        step = 'registration of the branch with DTM';
        await beforePrepare();
      } catch (err) {
        clean = await abandon(conn, mysql, xid);
        throw err;
      }
      step = mysql ? 'XA PREPARE' : 'PREPARE TRANSACTION';
      if (mysql) {
        await conn.execute(`XA END '${xid}'`);
        await conn.execute(`XA PREPARE '${xid}'`);
        clean = true;
      } else if (!(await pgPrepared(conn, xid, await conn.execute(`PREPARE TRANSACTION '${xid}'`)))) {
        step = ''; // the business's: it caught an SQL error, or ended the transaction itself, which left nothing to prepare
        // its work is gone, barrier row included (DTM's rollback of the branch finds nothing to undo), unless the business committed it
        const message = (await pgCommittedByBusiness(conn, row)) ? MESSAGES.xaCommittedByBranch(row.gid, row.branchId, xid, row.table) : MESSAGES.xaNotPrepared(row.gid, row.branchId, xid);
        throw new DtmFailureError(message, { gid: row.gid, branchId: row.branchId });
      }
      clean = true;
      return result;
    } finally {
      await conn.close(clean).catch(() => undefined);
    }
  } catch (err) {
    if (step && typeof err === 'object' && err !== null && !MODULE_STEPS.has(err)) MODULE_STEPS.set(err, step);
    throw err;
  }
}

/**
 * Whether PostgreSQL's `PREPARE TRANSACTION` (its `answer`) prepared `xid`. In a transaction that
 * already failed (a statement's error the handler caught) or was ended by the handler (COMMIT /
 * ROLLBACK), PostgreSQL raises no error: it answers with the command tag `ROLLBACK` and prepares
 * nothing. The tag costs no round trip; an adapter that does not report it gets `pg_prepared_xacts` asked.
 */
async function pgPrepared(conn: XaConnection, xid: string, answer: BarrierExecResult): Promise<boolean> {
  if (answer.command !== undefined) return !/^ROLLBACK\b/i.test(answer.command);
  const { rows } = await conn.execute('SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()', [xid]);
  return rows.length > 0;
}

/**
 * Whether the branch's barrier row is committed after a PREPARE TRANSACTION that prepared nothing:
 * the business ran COMMIT itself, committing its work outside the XA transaction. Asked on that
 * failure path only, on the branch's connection, which no longer has a transaction open; a query
 * that fails answers false (the general message covers both cases).
 */
async function pgCommittedByBusiness(conn: XaConnection, row: XaBarrierRow): Promise<boolean> {
  try {
    const { rows } = await conn.execute(selectReasonSql('postgres', row.table), [row.gid, row.branchId, 'action', '01']);
    return rows[0]?.reason === 'action';
  } catch {
    return false;
  }
}

/** What {@link prepareXa} knows of an XA action call: `once`, with `branch_auth_check_actions` (a committed row marks the branch called, {@link XA_CALL_BARRIER_ID}; a call that finds it is refused before anything runs). */
export interface XaActionCall {
  once: boolean;
}

/**
 * PostgreSQL, an XA action call: BEGIN, the branch's barrier row, then the transaction's bounds, as
 * one query (one round trip). The row waits for a lock {@link XA_ATTACHED_WAIT_MS} at most: only
 * another call of the same branch holds it longer (its first call prepared, or still running), and
 * that call, a replay, must not hold this connection until `lock_timeout`. The values are quoted
 * into the SQL as the XA id is ({@link xidOf}: the key rule leaves no quote or backslash).
 */
function pgXaCallBeginSql(row: XaBarrierRow, bounds?: LocalTransactionBounds): string {
  const values = [row.transType, row.gid, row.branchId, 'action', '01', 'action'];
  const insert = insertBarrierSql('postgres', row.table).replace(/\$(\d+)/g, (_, n: string) => `'${values[Number(n) - 1].replace(/'/g, "''")}'`);
  return `BEGIN; SET LOCAL lock_timeout = '${XA_ATTACHED_WAIT_MS}ms'; ${insert}; ${pgLocalBoundsSql(bounds) ?? 'SET LOCAL lock_timeout = DEFAULT'}`;
}

/** Whether `err` says another call holds the branch: MySQL's XA START of an id it knows (XAER_DUPID), PostgreSQL's lock timeout on the barrier row (55P03). */
function isHeldBranch(err: unknown, mysql: boolean): boolean {
  const e = err as { code?: unknown; errno?: unknown } | undefined;
  return mysql ? e?.errno === 1440 || e?.code === 'ER_XAER_DUPID' : e?.code === '55P03';
}

/** Rolls back the branch's XA transaction after an error; whether the rollback ran, leaving nothing open on the connection. */
async function abandon(conn: XaConnection, mysql: boolean, xid: string): Promise<boolean> {
  const statements = mysql ? [`XA END '${xid}'`, `XA ROLLBACK '${xid}'`] : ['ROLLBACK'];
  let rolledBack = true;
  for (const sql of statements) {
    rolledBack = await conn.execute(sql).then(
      () => true,
      () => false,
    );
  }
  return rolledBack;
}

/**
 * How long phase 2 waits for an XA branch that another connection still holds. MySQL / MariaDB: the
 * connection that runs or prepared it; that connection is closed before the branch answers, but the
 * server detaches the prepared transaction a moment later, and until then every other connection's
 * XA COMMIT | ROLLBACK says XAER_NOTA. PostgreSQL: a rollback that arrives while the branch's action
 * still runs (it registers before PREPARE TRANSACTION), whose barrier row waits on the action's.
 */
const XA_ATTACHED_WAIT_MS = 1000;

/**
 * Phase 2: XA COMMIT|ROLLBACK (COMMIT|ROLLBACK PREPARED); after a rollback the barrier row with
 * reason `rollback`, which marks that the rollback happened after the branch's prepare (or instead
 * of it). On MySQL / MariaDB, an id the statement calls unknown (XAER_NOTA) whose barrier row is
 * locked is still attached to the connection that runs or prepared the branch: the statement is
 * repeated for up to {@link XA_ATTACHED_WAIT_MS}, then fails with {@link DtmXaPhase2Error} (DTM
 * retries). A MySQL / MariaDB phase 2 the database acknowledged while the barrier row stays locked
 * was not applied ({@link stillLocked}): {@link DtmXaPhase2Error}, never reported as done. An id
 * the database does not know as prepared is judged by the barrier row the branch
 * wrote inside its XA transaction (so it exists only if the branch committed) and phase 2 writes:
 * - commit: a row with reason `action` means an earlier commit (a repeated phase 2): done;
 *   otherwise the branch's work was rolled back or lost outside DTM, and committing cannot happen:
 *   {@link DtmXaPhase2Error}, so the call fails, DTM retries it and the error is logged with the
 *   gid and branch id; never counted as committed;
 * - rollback: no row (the branch never prepared, or its prepare failed) or a `rollback` row (a
 *   repeated phase 2) means nothing is applied: the `rollback` row is written (as DTM's SDK does;
 *   a later commit then finds it), done; an `action` row means the branch committed, which cannot
 *   be undone: {@link DtmXaPhase2Error}.
 * On PostgreSQL the action's row is invisible while its transaction runs (or is prepared), and the
 * `rollback` row's insert waits on it: that insert waits for the lock a short while only
 * (`lock_timeout`), and the rollback is tried again (the action may have prepared meanwhile) for up
 * to {@link XA_ATTACHED_WAIT_MS}, then fails with {@link DtmXaPhase2Error} (DTM retries).
 */
export async function finishXa(db: XaDatabase, xid: string, commit: boolean, row: XaBarrierRow): Promise<void> {
  const sql = db.dialect === 'mysql' ? `XA ${commit ? 'COMMIT' : 'ROLLBACK'} '${xid}'` : `${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED '${xid}'`;
  const key = [row.gid, row.branchId, 'action', '01'];
  const insert = insertBarrierSql(db.dialect, row.table);
  const rollbackRow = [row.transType, ...key, 'rollback'];
  const op = commit ? 'commit' : 'rollback';
  const context = { gid: row.gid, branchId: row.branchId };
  const conn = await db.connect();
  const held = db.dialect === 'mysql' ? () => barrierRowLocked(conn, row.table, key) : undefined;
  const finish = async (): Promise<void> => {
    for (let waited = 0, pause = 5; ; waited += pause, pause = Math.min(pause * 2, 100)) {
      const unknown = await runPhase2(conn, sql, held, (ms, cause) => new DtmXaPhase2Error(MESSAGES.xaPhase2Attached(op, row.gid, row.branchId, xid, ms), op, { ...context, cause }));
      if (!unknown && held && (await stillLocked(held))) {
        // MariaDB: acknowledged, yet the branch's XA transaction is still there (see stillLocked)
        throw new DtmXaPhase2Error(MESSAGES.xaPhase2Unapplied(op, row.gid, row.branchId, xid), op, context);
      }
      if (unknown) {
        const { rows } = await conn.execute(selectReasonSql(db.dialect, row.table), key);
        const reason = rows[0]?.reason as string | undefined;
        if (commit ? reason !== 'action' : reason === 'action') {
          throw new DtmXaPhase2Error(MESSAGES.xaPhase2Unknown(op, row.gid, row.branchId, xid, reason), op, { ...context, cause: unknown.cause });
        }
        if (commit || reason === 'rollback') return;
      }
      if (commit) return;
      const refused = (err: unknown) => {
        throw barrierStatementError(err, row.table, db.dialect, context, 'xa-phase2');
      };
      if (db.dialect === 'mysql' || !unknown) {
        await conn.execute(insert, rollbackRow).catch(refused);
        return;
      }
      // PostgreSQL, not prepared and no row seen: the action may still run, holding its row
      const inserted = await pgInsertWaitingAtMost(conn, insert, rollbackRow, pause).catch(refused);
      if (inserted === 1) return;
      // still locked, or written meanwhile (the next round reads it): the rollback again
      if (waited >= XA_ATTACHED_WAIT_MS) throw new DtmXaPhase2Error(MESSAGES.xaPhase2Running(row.gid, row.branchId, xid, waited + pause), op, context);
    }
  };
  let clean = false; // finished: every statement ran, nothing is open on the connection
  try {
    await finish();
    clean = true;
  } finally {
    await conn.close(clean).catch(() => undefined);
  }
}

/**
 * Runs the insert `sql` on PostgreSQL in a transaction of its own that waits for a row lock no
 * longer than `ms` (`SET LOCAL lock_timeout`): the rows it inserted, or undefined when the lock
 * stayed held.
 */
async function pgInsertWaitingAtMost(conn: XaConnection, sql: string, params: unknown[], ms: number): Promise<number | undefined> {
  await conn.execute(`BEGIN; SET LOCAL lock_timeout = '${Math.trunc(ms)}ms'`);
  try {
    const { affected } = await conn.execute(sql, params);
    await conn.execute('COMMIT');
    return affected;
  } catch (err) {
    await conn.execute('ROLLBACK').catch(() => undefined);
    if ((err as { code?: unknown } | undefined)?.code === '55P03') return undefined; // lock_not_available
    throw err;
  }
}

/**
 * Runs phase 2's statement: undefined once it ran, `{ cause }` when the database does not know the
 * id. While `held()` says another connection still holds the branch (MySQL), the statement is
 * repeated (pauses of 5 ms doubling up to 100 ms) until it runs or {@link XA_ATTACHED_WAIT_MS}
 * have passed, then `stillHeld` is thrown. PostgreSQL's "prepared transaction ... is busy" (another
 * session commits or rolls it back at this moment: the same phase 2 twice at once) is waited out the
 * same way, then rethrown (DTM retries); the statement run again then finds the id finished.
 */
async function runPhase2(
  conn: XaConnection,
  sql: string,
  held: (() => Promise<boolean>) | undefined,
  stillHeld: (waitedMs: number, cause: unknown) => Error,
): Promise<{ cause: unknown } | undefined> {
  for (let waited = 0, pause = 5; ; waited += pause, pause = Math.min(pause * 2, 100)) {
    try {
      await conn.execute(sql);
      return undefined;
    } catch (err) {
      if (isXidBusy(err)) {
        // PostgreSQL: another session finishes this prepared transaction right now (the same phase 2 twice at once)
        if (waited >= XA_ATTACHED_WAIT_MS) throw err;
      } else {
        if (!isUnknownXid(err)) throw err;
        if (!held || !(await held())) return { cause: err };
        if (waited >= XA_ATTACHED_WAIT_MS) throw stillHeld(waited, err);
      }
    }
    await delay(pause);
  }
}

/**
 * Whether the branch's barrier row stays locked after its phase 2 was acknowledged (asked up to
 * four times, 25 ms apart: an overlapping phase 2 of the same branch locks it for a moment only).
 * MariaDB (seen on 10.11) acknowledges an XA COMMIT | ROLLBACK that arrives while it is still
 * detaching the prepared transaction from the connection that prepared it and has just closed (the
 * id is already free for other connections, the storage engine's transaction not yet), and applies
 * nothing: the id is gone from XA RECOVER, the transaction stays prepared with its row locks, and
 * only a server restart brings the id back. The row is unlocked after a phase 2 that applied.
 */
async function stillLocked(held: () => Promise<boolean>): Promise<boolean> {
  for (let probe = 1; ; probe++) {
    if (!(await held())) return false;
    if (probe === 4) return true;
    await delay(25);
  }
}

/**
 * Whether another transaction holds the lock of the branch's barrier row (`key`: gid, branch id,
 * op, barrier id), asked without waiting (`FOR UPDATE NOWAIT`: MySQL 8.0.1+, MariaDB 10.3+). The XA
 * branch wrote that row inside its XA transaction, which keeps it locked until phase 2 finishes it:
 * an id MySQL calls unknown with the row locked is still attached to its connection. No special
 * privilege is needed (MySQL 8's XA RECOVER asks for XA_RECOVER_ADMIN). A server that cannot run
 * the probe (no NOWAIT) gets false: the id is then judged by its barrier row, as without the wait.
 */
async function barrierRowLocked(conn: XaConnection, table: string, key: string[]): Promise<boolean> {
  try {
    await conn.execute(`${selectReasonSql('mysql', table)} FOR UPDATE NOWAIT`, key);
    return false;
  } catch (err) {
    const e = err as { code?: unknown; errno?: unknown } | undefined;
    // MySQL 8: ER_LOCK_NOWAIT; MariaDB: ER_LOCK_WAIT_TIMEOUT
    return e?.errno === 3572 || e?.errno === 1205 || e?.code === 'ER_LOCK_NOWAIT' || e?.code === 'ER_LOCK_WAIT_TIMEOUT';
  }
}

/** Whether `err` is PostgreSQL's refusal of a prepared transaction that another session is finishing ("... is busy", 55000). */
function isXidBusy(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return e?.code === '55000' && /is busy/.test(String(e?.message));
}

/** Whether `err` says the database has no prepared XA transaction of that id (MySQL XAER_NOTA, PostgreSQL "does not exist"). */
function isUnknownXid(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown } | undefined;
  return e?.code === 'ER_XAER_NOTA' || e?.errno === 1397 || e?.code === '42704' || /XAER_NOTA|does not exist/.test(textOf(e?.message ?? err));
}
