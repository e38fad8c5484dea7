// Phase 2 of a local XA branch on PostgreSQL (finishXa, lib/xa/xa-local-transaction.ts) while another
// session finishes the same prepared transaction (DTM's retry overlapping its first call): PostgreSQL
// refuses COMMIT / ROLLBACK PREPARED of it with 55000 "prepared transaction ... is busy" until that
// session is done, then says it does not exist. The race against the real PostgreSQL:
// barrier-security.spec's 'the same ... twice at once'.
import { describe, expect, it } from '@jest/globals';
import type { XaDatabase } from 'nestjs-dtm';
import { finishXa } from '../../lib/xa/xa-local-transaction.js';

/** A PostgreSQL XA database whose phase 2 statement is refused `busy` times as busy, then finds the id finished, its barrier row `reason`. */
function pgDatabase(busy: number, reason: string | undefined) {
  const sent: string[] = [];
  const db: XaDatabase<string> = {
    dialect: 'postgres',
    async connect() {
      return {
        handle: 'conn',
        execute: async (sql: string) => {
          sent.push(sql.split(' ').slice(0, 2).join(' '));
          if (/^(COMMIT|ROLLBACK) PREPARED/.test(sql)) {
            if (busy-- > 0) throw Object.assign(new Error('prepared transaction with identifier "g1-01" is busy'), { code: '55000' });
            throw Object.assign(new Error('prepared transaction with identifier "g1-01" does not exist'), { code: '42704' });
          }
          if (sql.startsWith('SELECT reason')) return { affected: 0, rows: reason ? [{ reason }] : [] };
          return { affected: 1, rows: [] };
        },
        close: async () => undefined,
      };
    },
  };
  return { db, sent };
}

const row = { transType: 'xa', gid: 'g1', branchId: '01', table: 'dtm_barrier' };

describe('finishXa on PostgreSQL, the prepared transaction busy in another session', () => {
  it.each([
    [true, 'action'],
    [false, 'rollback'],
  ] as const)('commit=%s: waits until the other session finished it, then reads the barrier row (%s) and is done, not an error DTM retries', async (commit, reason) => {
    const { db, sent } = pgDatabase(3, reason);
    await expect(finishXa(db, 'g1-01', commit, row)).resolves.toBeUndefined();
    expect(sent.filter((s) => s.endsWith('PREPARED'))).toHaveLength(4);
  });

  it('still busy after a second: the error is thrown (the call answers 500, DTM retries)', async () => {
    const { db } = pgDatabase(1000, 'action');
    await expect(finishXa(db, 'g1-01', true, row)).rejects.toMatchObject({ code: '55000' });
  });
});
