import { randomUUID } from 'node:crypto';
import { MESSAGES } from '../dtm.messages.js';
import { DtmDuplicatedError } from '../errors/dtm-duplicated.error.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { assertBarrierTable, barrierStatementError, DEFAULT_BARRIER_TABLE, deleteBarrierSql, insertBarrierSql, selectReasonSql } from './barrier.sql.js';
import type { BarrierDatabase, BarrierDialect, BarrierExecResult, BarrierOutcome, BarrierStatement, BarrierTransaction, LocalTransactionBounds } from './barrier.types.js';
import { REDIS_ADJUST_SCRIPT, REDIS_QUERY_PREPARED_SCRIPT, type RedisLike } from './redis-barrier.store.js';
import type { DtmBarrierDecision } from '../observability/dtm-events.js';
import { shownBranchId } from '../auth/branch-auth.js';
import { branchCallProblem, opProblem, UNDO_OPS } from '../transport/branch-keys.js';

/**
 * The op whose row a compensating op inserts first (null compensation, anti-hanging), on every
 * store. (DTM's own Redis script knows no `rollback`; a workflow's rollback needs it there too.)
 */
const ORIGIN_OP: Record<string, string> = { cancel: 'try', compensate: 'action', rollback: 'action' };

/** The outcome of a call whose business the barrier skipped. */
type Skipped = Extract<BarrierOutcome<never>, { executed: false }>;

/** Options of a {@link BranchBarrier}. */
export interface BranchBarrierOptions {
  /** Barrier table (`name` or `schema.name`); default `dtm_barrier.barrier`. */
  table?: string;
  /**
   * Whole seconds a statement of {@link BranchBarrier.callWithDb}'s local transaction may wait for a
   * lock (PostgreSQL: also run); `DtmClient.barrier()` and the decorators pass `lynx.dtm.branch_timeout`.
   * Unset: the database's own (no bound on PostgreSQL, 50 s on MySQL).
   */
  timeoutSeconds?: number;
  /**
   * Told what the barrier decided at each call whose business ran or was skipped
   * (`DtmClient.barrier()` passes the branch call's, for its `branch.call` event and span). With
   * it, a skipped action or Try costs one query more, to tell a hanging one from a duplicate.
   */
  onDecision?: (decision: DtmBarrierDecision) => void;
  /**
   * The call's handler already runs behind a SQL barrier (`@UseBarrier`, `{ barrier }`; set by
   * `DtmClient.barrier()`): {@link BranchBarrier.call} and {@link BranchBarrier.callWithDb} then throw
   * `DtmUsageError`, as their barrier row is the module's (skipped as its own duplicate, or waited
   * for until the lock timeout). The Redis methods are unaffected.
   */
  behindBarrier?: boolean;
  /**
   * Why the branch call is refused (the rule its gid, branch id, trans_type or op breaks; set by
   * `DtmClient.barrier()` for an undo call that `@BranchContext()` found so on a route without a
   * branch decorator): every method then writes nothing and runs no business. An undo op
   * (compensate, cancel, rollback) resolves as a null compensation (its action, which carried the
   * same values, was refused), any other op (and a back-check) throws `DtmFailureError`.
   */
  refusal?: string;
}

/**
 * DTM's sub-transaction barrier for one branch call: makes a branch effectively-once although DTM
 * delivers at least once and out of order. Duplicates are skipped, a compensation whose action
 * never ran does nothing (null compensation), and an action arriving after its compensation does
 * nothing (anti-hanging). The barrier rows are written in the same local transaction as the
 * business, so both commit or neither does. Each `call` on one barrier takes the next barrier id
 * (`01`, `02`, ...), so one handler can run several local transactions. Its transType, gid, branchId
 * and op must follow the rules the branch guard checks (a `BranchInfo` built by hand is checked here):
 * `DtmUsageError` otherwise, before anything is written.
 */
export class BranchBarrier {
  private barrierCount = 0;
  /** The table the barrier rows go to. */
  readonly table: string;
  private readonly bounds?: LocalTransactionBounds;
  private readonly onDecision?: (decision: DtmBarrierDecision) => void;
  private readonly behindBarrier: boolean;
  private readonly refusal?: string;

  constructor(
    readonly transType: string,
    readonly gid: string,
    readonly branchId: string,
    readonly op: string,
    options: BranchBarrierOptions = {},
  ) {
    for (const key of ['transType', 'gid', 'branchId', 'op'] as const) {
      if (typeof this[key] !== 'string' || this[key] === '') throw new DtmUsageError(MESSAGES.barrierWithoutCall(`no ${key}`));
    }
    // The branch guard's rules, again here for a BranchInfo built by hand: these values become the
    // barrier row's keys. A refused call's barrier (`refusal`) writes nothing, so needs none.
    if (options.refusal === undefined) {
      const problem = branchCallProblem(gid, branchId, transType) ?? opProblem(op, transType, branchId);
      if (problem !== undefined) throw new DtmUsageError(MESSAGES.barrierKeysRefused(problem));
    }
    this.table = options.table ?? DEFAULT_BARRIER_TABLE;
    assertBarrierTable(this.table);
    if (options.timeoutSeconds !== undefined) this.bounds = { timeoutSeconds: options.timeoutSeconds };
    this.onDecision = options.onDecision;
    this.behindBarrier = options.behindBarrier === true;
    this.refusal = options.refusal;
  }

  /**
   * The barrier of the branch call described by `branch` (from `@BranchContext()`), or of a message's
   * local transaction (`doAndSubmit`'s argument, whose `barrierTable`, the module's, is the table
   * unless `options.table` is given).
   */
  static from(branch: { transType: string; gid: string; branchId: string; op: string; barrierTable?: string }, options?: BranchBarrierOptions): BranchBarrier {
    if (typeof branch !== 'object' || branch === null) throw new DtmUsageError(MESSAGES.barrierWithoutCall(branch === null ? 'null' : typeof branch));
    const localTable = options?.table === undefined ? branch.barrierTable : undefined;
    return new BranchBarrier(branch.transType, branch.gid, branch.branchId, branch.op, localTable === undefined ? options : { ...options, table: localTable });
  }

  /**
   * Runs `business` inside your open local transaction `tx`, guarded by the barrier. Resolves with
   * what it did; a business error propagates (never swallowed): roll your transaction back then,
   * which removes the barrier rows too. A barrier insert the database refuses for the table itself
   * (a privilege, a read-only database, no such table) is `DtmUsageError` saying what to do. Commit when it resolves, also when the business was skipped
   * (the rows record that the call was handled).
   */
  async call<T>(tx: BarrierTransaction, business: () => Promise<T>): Promise<BarrierOutcome<T>> {
    if (this.refusal !== undefined) return this.refused();
    if (this.behindBarrier) throw this.alreadyBehindBarrier('call');
    const inserts = this.inserts(tx.dialect, this.nextBarrierId());
    const results: BarrierExecResult[] = [];
    for (const insert of inserts) {
      const result = await tx.execute(insert.sql, insert.params).catch((err: unknown) => {
        throw this.refusedByDatabase(err, tx.dialect);
      });
      results.push(result);
      if (result.outsideTransaction) await this.undoOutsideTransaction(tx, inserts, results);
    }
    const skipped = this.decide(results);
    if (skipped) return this.onDecision ? this.reportSkipped(tx, skipped) : skipped;
    return this.executed(await business());
  }

  /**
   * {@link call} in a new local transaction on `db`: committed if it resolves, rolled back if it
   * throws. The barrier's inserts go to `db` with the BEGIN (in one round trip where the adapter can),
   * with the lock wait bound of `timeoutSeconds`.
   * When they deadlock (MySQL / MariaDB can, when the same call arrives twice at once), the
   * transaction is retried, up to 3 times: the business had not run yet.
   */
  async callWithDb<H, T>(db: BarrierDatabase<H>, business: (handle: H) => Promise<T>): Promise<BarrierOutcome<T>> {
    return this.withDb(db, business, false);
  }

  /**
   * @internal `Msg.doAndSubmitDb`'s local transaction: {@link callWithDb}, and on MySQL / MariaDB the
   * message's barrier row read back in the transaction before its commit (one query): a deadlock
   * the business caught and went on from rolled the whole transaction back, row included, and what
   * followed ran on its own; committing would report a success whose message DTM then delivers.
   * Such a transaction is `DtmUsageError` (rolled back; the back-check then answers FAILURE).
   */
  async outboxWithDb<H, T>(db: BarrierDatabase<H>, business: (handle: H) => Promise<T>): Promise<BarrierOutcome<T>> {
    return this.withDb(db, business, db.dialect === 'mysql');
  }

  private async withDb<H, T>(db: BarrierDatabase<H>, business: (handle: H) => Promise<T>, confirmRow: boolean): Promise<BarrierOutcome<T>> {
    if (this.refusal !== undefined) return this.refused();
    if (this.behindBarrier) throw this.alreadyBehindBarrier('callWithDb');
    const barrierId = this.nextBarrierId();
    const inserts = this.inserts(db.dialect, barrierId);
    for (let attempt = 1; ; attempt++) {
      let businessStarted = false;
      try {
        return await db.transaction(async (handle, tx, leading) => {
          let results = leading;
          if (results?.length !== inserts.length) {
            results = [];
            for (const insert of inserts) results.push(await tx.execute(insert.sql, insert.params));
          }
          const skipped = this.decide(results);
          if (skipped) return this.onDecision ? this.reportSkipped(tx, skipped) : skipped;
          businessStarted = true;
          const result = await business(handle);
          if (confirmRow) await this.assertOwnRow(tx, barrierId);
          return this.executed(result);
        }, inserts, this.bounds);
      } catch (err) {
        if (businessStarted) throw err;
        if (!isDeadlock(err) || attempt >= 3) throw this.refusedByDatabase(err, db.dialect);
      }
    }
  }

  /**
   * The barrier's inserts for one barrier id: this op's row; for a compensating op, first the
   * origin op's row, in a statement of its own (as DTM's SDKs insert them), so that what each
   * inserted tells its own story. An action or Try inserts its row only: one statement.
   */
  private inserts(dialect: BarrierDialect, barrierId: string): BarrierStatement[] {
    const originOp = ORIGIN_OP[this.op];
    const sql = insertBarrierSql(dialect, this.table);
    const current = { sql, params: [this.transType, this.gid, this.branchId, this.op, barrierId, this.op] };
    if (!originOp) return [current];
    return [{ sql, params: [this.transType, this.gid, this.branchId, originOp, barrierId, this.op] }, current];
  }

  /**
   * DTM's decision from the rows the inserts added (`[current]`, or `[origin, current]` for a
   * compensating op); undefined: run the business. A compensating op that added the origin op's
   * row skips (its action never ran: null compensation), unless its own row was there already
   * (a repeat whose action row was purged: a duplicate); any op whose own row was there skips
   * (a duplicate, or for an action / Try, one arriving after its compensation).
   */
  private decide(results: BarrierExecResult[]): Skipped | undefined {
    const current = results[results.length - 1].affected;
    const origin = results.length > 1 ? results[0].affected : 0;
    if (this.op === 'msg' && current === 0) throw new DtmDuplicatedError(this.gid);
    if (current === 0) return { executed: false, reason: 'duplicate' };
    if (origin > 0) return { executed: false, reason: 'null-compensation' };
    return undefined;
  }

  /**
   * A barrier insert of {@link call} ran outside any transaction (`tx` told so: a mysql2 connection
   * whose `beginTransaction()` was forgotten), so the rows it wrote are committed whatever the business
   * does: deletes the rows the inserts so far added, then throws `DtmUsageError` (the business never runs).
   */
  private async undoOutsideTransaction(tx: BarrierTransaction, inserts: BarrierStatement[], results: BarrierExecResult[]): Promise<never> {
    const sql = deleteBarrierSql(tx.dialect, this.table);
    for (let i = 0; i < results.length; i++) {
      const [, gid, branchId, op, barrierId] = inserts[i].params;
      if (results[i].affected > 0) await tx.execute(sql, [gid, branchId, op, barrierId]);
    }
    throw new DtmUsageError(MESSAGES.barrierTxAutocommitted(this.gid, shownBranchId(this.branchId), this.op), { gid: this.gid, branchId: this.branchId });
  }

  /** Throws `DtmUsageError` unless `tx` still sees this call's own barrier row (see {@link outboxWithDb}). */
  private async assertOwnRow(tx: BarrierTransaction, barrierId: string): Promise<void> {
    const { rows } = await tx.execute(selectReasonSql(tx.dialect, this.table), [this.gid, this.branchId, this.op, barrierId]);
    if (rows[0]?.reason !== this.op) throw new DtmUsageError(MESSAGES.outboxRolledBack(this.gid));
  }

  /** Tells `onDecision` why the business was `skipped` (a skipped action or Try asked on `tx` whether it was hanging). */
  private async reportSkipped(tx: BarrierTransaction, skipped: Skipped): Promise<Skipped> {
    this.onDecision?.(skipped.reason === 'duplicate' && (await this.hangingPrevented(tx)) ? 'hanging-prevented' : skipped.reason);
    return skipped;
  }

  /** The outcome of a business that ran, told to `onDecision`. */
  private executed<T>(result: T): BarrierOutcome<T> {
    this.onDecision?.('executed');
    return { executed: true, result };
  }

  /**
   * The two-phase message back-check (`@MsgQueryPrepared` with a barrier): resolves if the local
   * transaction committed; throws `DtmFailureError` (answer 409) if it did not, and from then on it
   * never can (its barrier insert will find this row). If the local transaction is still running,
   * this waits for it on the row lock: with `timeoutSeconds` (the module passes the branch timeout)
   * no longer than that, in a short transaction of its own bounded as {@link callWithDb}'s are (past
   * it, the database's lock timeout error: DTM retries), so that back-checks DTM stopped waiting for
   * do not hold pooled connections while a local transaction hangs; without it, outside any transaction.
   */
  async queryPrepared(db: BarrierDatabase): Promise<void> {
    if (this.refusal !== undefined) throw this.refusalFailure();
    const insert = { sql: insertBarrierSql(db.dialect, this.table), params: ['msg', this.gid, '00', 'msg', '01', 'rollback'] };
    const select = selectReasonSql(db.dialect, this.table);
    const keys = [this.gid, '00', 'msg', '01'];
    let rows: Record<string, unknown>[];
    try {
      if (this.bounds) {
        rows = await db.transaction(
          async (_handle, tx, leading) => {
            if (leading?.length !== 1) await tx.execute(insert.sql, insert.params);
            return (await tx.execute(select, keys)).rows;
          },
          [insert],
          this.bounds,
        );
      } else {
        await db.execute(insert.sql, insert.params);
        rows = (await db.execute(select, keys)).rows;
      }
    } catch (err) {
      throw this.refusedByDatabase(err, db.dialect);
    }
    if (rows[0]?.reason === 'rollback') throw new DtmFailureError(MESSAGES.msgRolledBack(this.gid), { gid: this.gid });
  }

  /**
   * DTM's Redis barrier: adds `amount` to the integer at `key`, once per branch call. Skips a
   * duplicate (this call's barrier key is there) and a null compensation (a compensation, cancel or
   * rollback whose action never ran) before it looks at the amount, so these are skipped whatever
   * the balance. Then throws `DtmFailureError` if the key is missing or the result would be negative
   * (for an action: roll back). `amount` must be a safe integer (whole units, e.g. cents, as DTM's
   * SDKs take `amount int`): else `DtmUsageError` before anything is written. A stored value that is
   * not an integer (e.g. written by INCRBYFLOAT) throws `DtmUsageError` too, with nothing written:
   * the branch answers an error, which DTM retries (never FAILURE). A call that did not adjust the
   * amount never leaves its barrier key, so its retry does the work. The script sent again by the
   * Redis client after Redis ran it (ioredis resends a command whose answer a cut connection lost)
   * answers what it did the first time: each call marks its key with a value of its own (`op:<uuid>`;
   * DTM's SDKs read only `rollback`). `expireSeconds` keeps the
   * barrier keys that long: a positive whole number, else `DtmUsageError` before anything is written
   * (Redis would refuse it after the amount was added, and every retry would add it again). Once
   * they expired, a compensation of the call is skipped as a null compensation (the amount is never
   * given back): keep them longer than the transaction can stay unfinished. On Redis Cluster, an
   * amount key in another hash slot than the barrier keys (`<gid>-...`) is `DtmUsageError` (Redis's
   * CROSSSLOT), nothing written.
   */
  async redisCheckAdjustAmount(redis: RedisLike, key: string, amount: number, expireSeconds = 86_400 * 7): Promise<BarrierOutcome<void>> {
    if (this.refusal !== undefined) return this.refused();
    if (!Number.isSafeInteger(amount)) throw new DtmUsageError(MESSAGES.redisAmountNotInteger(key, amount), { gid: this.gid, branchId: this.branchId });
    this.assertRedisExpiry('redisCheckAdjustAmount', expireSeconds);
    const barrierId = this.nextBarrierId();
    const originOp = ORIGIN_OP[this.op] ?? '';
    const answer = await redis
      // the call's own mark: sent again by the client after a cut connection, it answers what it did
      .eval(REDIS_ADJUST_SCRIPT, 3, key, this.redisKey(this.op, barrierId), this.redisKey(originOp, barrierId), amount, originOp, expireSeconds, `op:${randomUUID()}`)
      .catch((err: unknown) => {
        // Redis Cluster refuses the script before running it: say why, and what to do
        if (/^CROSSSLOT\b/.test(String((err as Error | undefined)?.message))) {
          throw new DtmUsageError(MESSAGES.redisCrossSlot(key, this.gid), { gid: this.gid, branchId: this.branchId, cause: err });
        }
        throw err;
      });
    if (answer === 'DUPLICATE' || answer === 'HANGING') {
      if (this.op === 'msg') throw new DtmDuplicatedError(this.gid);
      this.onDecision?.(answer === 'HANGING' ? 'hanging-prevented' : 'duplicate');
      return { executed: false, reason: 'duplicate' };
    }
    if (answer === 'NULL_COMPENSATION') {
      this.onDecision?.('null-compensation');
      return { executed: false, reason: 'null-compensation' };
    }
    if (answer === 'APPLIED') return this.executed(undefined);
    const context = { gid: this.gid, branchId: this.branchId };
    if (answer === 'FAILURE') throw new DtmFailureError(MESSAGES.redisInsufficient(key, amount), context);
    const text = String(answer);
    if (text.startsWith('NOT_INTEGER ')) throw new DtmUsageError(MESSAGES.redisBalanceNotInteger(key, text.slice('NOT_INTEGER '.length)), context);
    if (text === 'BAD_AMOUNT') throw new DtmUsageError(MESSAGES.redisAmountNotInteger(key, amount), context);
    if (text === 'BAD_EXPIRY') throw new DtmUsageError(MESSAGES.redisBadExpiry('redisCheckAdjustAmount', expireSeconds), context);
    throw new DtmUsageError(MESSAGES.redisNotApplied(key, amount, text.replace(/^NOT_APPLIED /, '')), context);
  }

  /** The Redis message back-check: like {@link queryPrepared}, on the key `<gid>-00-msg-01`. */
  async redisQueryPrepared(redis: RedisLike, expireSeconds = 86_400 * 7): Promise<void> {
    if (this.refusal !== undefined) throw this.refusalFailure();
    this.assertRedisExpiry('redisQueryPrepared', expireSeconds);
    const reason = await redis.eval(REDIS_QUERY_PREPARED_SCRIPT, 1, `${this.gid}-00-msg-01`, expireSeconds);
    if (reason === 'rollback') throw new DtmFailureError(MESSAGES.msgRolledBack(this.gid), { gid: this.gid });
  }

  /**
   * After the barrier skipped an action or a Try as a `duplicate`: whether it was in fact the
   * action arriving after its compensation (anti-hanging: the row was written by the compensation)
   * rather than a repeat. One query, on the barrier row of the last call; only `onDecision` asks.
   */
  private async hangingPrevented(tx: BarrierTransaction): Promise<boolean> {
    if (this.op !== 'action' && this.op !== 'try') return false;
    const barrierId = barrierIdOf(this.barrierCount);
    const { rows } = await tx.execute(selectReasonSql(tx.dialect, this.table), [this.gid, this.branchId, this.op, barrierId]);
    const reason = rows[0]?.reason;
    return typeof reason === 'string' && reason !== this.op;
  }

  /** Throws `DtmUsageError` unless `expireSeconds` is a positive safe integer (Redis's `SET ... EX` takes nothing else). */
  private assertRedisExpiry(method: string, expireSeconds: number): void {
    if (!Number.isSafeInteger(expireSeconds) || expireSeconds <= 0) throw new DtmUsageError(MESSAGES.redisBadExpiry(method, expireSeconds), { gid: this.gid, branchId: this.branchId });
  }

  /**
   * `err` of a barrier statement (before any business ran), as the caller gets it: the database's
   * refusal of the barrier table (a privilege not granted, a read-only database, no such table) is a
   * `DtmUsageError` naming the table and what to do, with `err` as its cause (the call answers an
   * error DTM retries, as before); any other error as it is.
   */
  private refusedByDatabase(err: unknown, dialect: BarrierDialect): unknown {
    return barrierStatementError(err, this.table, dialect, { gid: this.gid, branchId: this.branchId });
  }

  /** The outcome of a refused call (see {@link BranchBarrierOptions.refusal}): an undo op's null compensation, nothing written; `DtmFailureError` for any other op. */
  private async refused(): Promise<Skipped> {
    if (UNDO_OPS.has(this.op)) return { executed: false, reason: 'null-compensation' };
    throw this.refusalFailure();
  }

  /** The FAILURE of a refused call (see {@link BranchBarrierOptions.refusal}), saying why. */
  private refusalFailure(): DtmFailureError {
    return new DtmFailureError(MESSAGES.branchKeysRefused(this.refusal!), { gid: this.gid, branchId: this.branchId });
  }

  /** The error of a SQL barrier call in a handler the module already runs behind one (see {@link BranchBarrierOptions.behindBarrier}). */
  private alreadyBehindBarrier(method: string): DtmUsageError {
    return new DtmUsageError(MESSAGES.barrierBehindBarrier(method, this.gid, shownBranchId(this.branchId), this.op), { gid: this.gid, branchId: this.branchId });
  }

  private nextBarrierId(): string {
    this.barrierCount += 1;
    return barrierIdOf(this.barrierCount);
  }

  private redisKey(op: string, barrierId: string): string {
    return `${this.gid}-${this.branchId}-${op}-${barrierId}`;
  }
}

function isDeadlock(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return e?.code === 'ER_LOCK_DEADLOCK' || e?.errno === 1213 || e?.code === '40P01' || /deadlock/i.test(String(e?.message ?? ''));
}

/** The barrier id of a branch call's `count`-th barrier operation: `01`, `02`, ... */
function barrierIdOf(count: number): string {
  return String(count).padStart(2, '0');
}
