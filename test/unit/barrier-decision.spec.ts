// The barrier's decision, without a database: a transaction that behaves as the barrier table does
// (a row per trans_type, gid, branch_id, op, barrier_id; a second insert of one affects nothing),
// and what BranchBarrier then runs or skips, as DTM's SDKs do.
import { describe, expect, it } from '@jest/globals';
import { BranchBarrier, DtmDuplicatedError, DtmUsageError, type BarrierDatabase, type BarrierExecResult, type BarrierTransaction } from 'nestjs-dtm';
import { refusal } from '../support/refusal.js';

/** A barrier table in memory: INSERT IGNORE semantics on the unique key (one or several rows per statement). */
class Table {
  readonly rows = new Map<string, string>();
  inserts = 0;
  tx(): BarrierTransaction {
    return {
      dialect: 'postgres',
      // one statement may insert several rows (6 parameters each): affected counts the new ones
      execute: async (_sql: string, params: unknown[]): Promise<BarrierExecResult> => {
        this.inserts++;
        let affected = 0;
        for (let i = 0; i < params.length; i += 6) {
          const [transType, gid, branchId, op, barrierId, reason] = params.slice(i, i + 6) as string[];
          const key = [transType, gid, branchId, op, barrierId].join('/');
          if (this.rows.has(key)) continue;
          this.rows.set(key, reason);
          affected++;
        }
        return { affected, rows: [] };
      },
    };
  }
}

/** Runs one branch call of `op` behind the barrier; whether its business ran. */
async function call(table: Table, op: string, gid = 'g1', branchId = '01') {
  let ran = false;
  const outcome = await new BranchBarrier(op === 'try' || op === 'cancel' || op === 'confirm' ? 'tcc' : 'saga', gid, branchId, op).call(table.tx(), async () => {
    ran = true;
    return 'done';
  });
  return { ran, outcome };
}

describe('BranchBarrier decision', () => {
  it('an action runs once: its duplicate is skipped', async () => {
    const table = new Table();
    expect(await call(table, 'action')).toEqual({ ran: true, outcome: { executed: true, result: 'done' } });
    expect(await call(table, 'action')).toEqual({ ran: false, outcome: { executed: false, reason: 'duplicate' } });
    expect([...table.rows.values()]).toEqual(['action']);
  });

  it('a compensation after its action runs (once); a duplicate compensation is skipped', async () => {
    const table = new Table();
    await call(table, 'action');
    expect((await call(table, 'compensate')).ran).toBe(true);
    expect(await call(table, 'compensate')).toEqual({ ran: false, outcome: { executed: false, reason: 'duplicate' } });
  });

  it('a compensation whose action never ran does nothing (null compensation), and the action arriving late does nothing (anti-hanging)', async () => {
    const table = new Table();
    expect(await call(table, 'compensate')).toEqual({ ran: false, outcome: { executed: false, reason: 'null-compensation' } });
    expect(table.rows.get('saga/g1/01/action/01')).toBe('compensate');
    expect(await call(table, 'action')).toEqual({ ran: false, outcome: { executed: false, reason: 'duplicate' } });
    // TCC: cancel before try, the same
    expect(await call(table, 'cancel', 'g2')).toEqual({ ran: false, outcome: { executed: false, reason: 'null-compensation' } });
    expect((await call(table, 'try', 'g2')).ran).toBe(false);
  });

  it("a repeated compensation whose action's row was purged (its own row is there) is skipped, as DTM's Go SDK skips it", async () => {
    const table = new Table();
    await call(table, 'action');
    expect((await call(table, 'compensate')).ran).toBe(true);
    table.rows.delete('saga/g1/01/action/01'); // a purge by create_time took the action's row only
    expect(await call(table, 'compensate')).toEqual({ ran: false, outcome: { executed: false, reason: 'duplicate' } });
    // TCC: the same for cancel
    await call(table, 'try', 'g2');
    expect((await call(table, 'cancel', 'g2')).ran).toBe(true);
    table.rows.delete('tcc/g2/01/try/01');
    expect((await call(table, 'cancel', 'g2')).ran).toBe(false);
  });

  it('other branches and transactions are independent; each call on one barrier takes the next barrier id', async () => {
    const table = new Table();
    await call(table, 'action', 'g1', '01');
    expect((await call(table, 'action', 'g1', '02')).ran).toBe(true);
    expect((await call(table, 'action', 'g2', '01')).ran).toBe(true);
    const barrier = new BranchBarrier('saga', 'g3', '01', 'action');
    for (let i = 0; i < 2; i++) expect((await barrier.call(table.tx(), async () => i)).executed).toBe(true);
    expect([...table.rows.keys()].filter((k) => k.includes('/g3/'))).toEqual(['saga/g3/01/action/01', 'saga/g3/01/action/02']);
  });

  it('a message whose barrier row is already there (the back-check rolled it back) is DtmDuplicatedError; a business error propagates', async () => {
    const table = new Table();
    table.rows.set('msg/g1/01/msg/01', 'rollback');
    await expect(new BranchBarrier('msg', 'g1', '01', 'msg').call(table.tx(), async () => 1)).rejects.toThrow(DtmDuplicatedError);
    await expect(new BranchBarrier('saga', 'g9', '01', 'action').call(table.tx(), async () => Promise.reject(new Error('business failed')))).rejects.toThrow('business failed');
  });

  it('callWithDb retries a deadlock that came before the business (at most 3 attempts), never after it', async () => {
    const table = new Table();
    let attempts = 0;
    const db = (failBusiness: boolean): BarrierDatabase<string> => ({
      dialect: 'mysql',
      execute: (sql, params) => table.tx().execute(sql, params),
      transaction: async (work) => {
        attempts++;
        if (!failBusiness && attempts < 3) throw Object.assign(new Error('Deadlock found'), { errno: 1213 });
        return work('handle', table.tx(), []);
      },
    });
    expect(await new BranchBarrier('saga', 'g1', '01', 'action').callWithDb(db(false), async (h) => h)).toEqual({ executed: true, result: 'handle' });
    expect(attempts).toBe(3);
    attempts = 0;
    const deadlockInBusiness = new BranchBarrier('saga', 'g2', '01', 'action').callWithDb(db(true), async () => {
      throw Object.assign(new Error('Deadlock found'), { errno: 1213 });
    });
    await expect(deadlockInBusiness).rejects.toThrow('Deadlock found');
    expect(attempts).toBe(1);
  });
});

describe('a barrier without a branch call', () => {
  it('is refused with DtmUsageError that says to pass @BranchContext(): no call, or a call missing a key', () => {
    expect(() => BranchBarrier.from(undefined as never)).toThrow('a barrier belongs to one branch call: pass its @BranchContext() (transType, gid, branchId and op as DTM sent them), got undefined');
    expect(() => BranchBarrier.from({} as never)).toThrow('got no transType');
    expect(() => new BranchBarrier('saga', '', '01', 'action')).toThrow(DtmUsageError);
    expect(() => new BranchBarrier('saga', 'g', '01', 'action')).not.toThrow();
  });

  it('built by hand, is refused with DtmUsageError when a value breaks the branch guard\'s rules, saying which and not repeating it; a refused call\'s barrier is not', () => {
    expect(refusal(() => BranchBarrier.from({ transType: 'saga', gid: 'order 7', branchId: '01', op: 'action' }), DtmUsageError)).toBe(
      "a barrier's transType, gid, branchId and op are its branch call's, as DTM sent them (pass its @BranchContext()): the gid has a space at position 6 (gids and branch ids are printable ASCII without spaces, quotes, backslashes or ';'); nothing was written",
    );
    expect(refusal(() => new BranchBarrier('saga', 'g', `01'; DROP TABLE x`, 'action'), DtmUsageError)).toContain('the branch id has a quote at position 3');
    expect(refusal(() => new BranchBarrier('saga', 'g'.repeat(129), '01', 'action'), DtmUsageError)).toContain('the gid is 129 characters, over the limit of 128');
    expect(refusal(() => new BranchBarrier('SAGA', 'g', '01', 'action'), DtmUsageError)).toContain('the trans_type is none DTM sends');
    expect(refusal(() => new BranchBarrier('saga', 'g', '01', 'compensate '), DtmUsageError)).toContain('the op is none DTM sends');
    expect(refusal(() => new BranchBarrier('msg', 'g\u00e9', '00', 'msg'), DtmUsageError)).not.toContain('g\u00e9');
    // What DTM and the module send passes: a workflow's resume carries the workflow's name as its op.
    expect(() => new BranchBarrier('workflow', 'Tg7kq2', '00', 'transfer-flow')).not.toThrow();
    expect(() => new BranchBarrier('tcc', 'order-7', '01-01', 'cancel')).not.toThrow();
    // A call @BranchContext() refused already (an undo: its barrier resolves null-compensation, writing nothing).
    expect(() => new BranchBarrier('saga', 'order 7', '01', 'compensate', { refusal: 'the gid has a space' })).not.toThrow();
  });
});

describe('the Redis barrier (redisCheckAdjustAmount), without Redis', () => {
  /** A Redis that answers the script with `answer` and records its calls. */
  const redis = (answer: unknown) => {
    const calls: unknown[][] = [];
    return { calls, eval: async (...args: unknown[]) => (calls.push(args), answer) };
  };

  it('refuses an amount that is not a safe integer with DtmUsageError, before it talks to Redis', async () => {
    for (const amount of [10.5, -0.01, Number.NaN, Infinity, 2 ** 53, '10' as unknown as number]) {
      const r = redis('APPLIED');
      const error = await new BranchBarrier('saga', 'g', '01', 'action').redisCheckAdjustAmount(r, 'acct', amount).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain('whole units, e.g. cents');
      expect(r.calls).toEqual([]);
    }
    // a refused call takes no barrier id: the next call on the barrier is 01
    const b = new BranchBarrier('saga', 'g', '01', 'action');
    const r = redis('APPLIED');
    await b.redisCheckAdjustAmount(r, 'acct', 1.5).catch(() => undefined);
    expect(await b.redisCheckAdjustAmount(r, 'acct', -3)).toEqual({ executed: true, result: undefined });
    expect(r.calls[0].slice(1, 7)).toEqual([3, 'acct', 'g-01-action-01', 'g-01--01', -3, '']);
  });

  it('maps the script answers: a malformed stored value or INCRBY refusing is DtmUsageError (retried), never FAILURE; unknown answers are not success', async () => {
    const answerOf = (answer: unknown, op = 'action') => new BranchBarrier('saga', 'g', '01', op).redisCheckAdjustAmount(redis(answer), 'acct', -3).catch((e: unknown) => e);
    const notInteger = await answerOf('NOT_INTEGER 100.5');
    expect(notInteger).toBeInstanceOf(DtmUsageError);
    expect((notInteger as Error).message).toContain('redis key acct holds "100.5", not an integer');
    expect(await answerOf('BAD_AMOUNT')).toBeInstanceOf(DtmUsageError);
    const overflow = await answerOf('NOT_APPLIED ERR increment or decrement would overflow');
    expect(overflow).toBeInstanceOf(DtmUsageError);
    expect((overflow as Error).message).toContain('(ERR increment or decrement would overflow)');
    expect(await answerOf(null)).toBeInstanceOf(DtmUsageError);
    expect(((await answerOf('FAILURE')) as Error).name).toBe('DtmFailureError');
    expect(await answerOf('DUPLICATE', 'compensate')).toEqual({ executed: false, reason: 'duplicate' });
    expect(await answerOf('NULL_COMPENSATION', 'compensate')).toEqual({ executed: false, reason: 'null-compensation' });
  });
});
