// Phase 1 of a local XA transaction on PostgreSQL (lib/xa/xa-local-transaction.ts), on a connection
// that answers as PostgreSQL does: PREPARE TRANSACTION in a transaction that already failed raises
// no error but answers the command tag ROLLBACK and prepares nothing. Against the real DTM server
// and PostgreSQL: test/e2e/xa.spec.ts and workflow-edge-cases.spec.ts.
import { describe, expect, it } from '@jest/globals';
import { DtmFailureError, type BarrierExecResult, type XaDatabase } from 'nestjs-dtm';
import { prepareXa } from '../../lib/xa/xa-local-transaction.js';

/** A PostgreSQL XA database whose PREPARE TRANSACTION answers `prepare`, and whose pg_prepared_xacts holds `listed`. */
function pgDatabase(prepare: BarrierExecResult, listed: string[] = []) {
  const sent: string[] = [];
  let closed = 0;
  const db: XaDatabase<string> = {
    dialect: 'postgres',
    async connect() {
      return {
        handle: 'conn',
        execute: async (sql: string, params: unknown[] = []) => {
          sent.push(sql.split(' ').slice(0, 2).join(' '));
          if (sql.startsWith('PREPARE TRANSACTION')) return prepare;
          if (sql.includes('pg_prepared_xacts')) return { affected: 0, rows: listed.filter((x) => x === params[0]).map(() => ({ '?column?': 1 })) };
          return { affected: 1, rows: [] };
        },
        close: async () => void closed++,
      };
    },
  };
  return { db, sent, closed: () => closed };
}

const row = { transType: 'xa', gid: 'g1', branchId: '01', table: 'dtm_barrier' };
const run = (db: XaDatabase<string>) =>
  prepareXa(db, 'g1-01', row, async () => 'done', async () => undefined).then(
    (value) => value,
    (e: unknown) => e,
  );

describe('prepareXa on PostgreSQL', () => {
  it('a PREPARE TRANSACTION answered PREPARE prepared: the value is returned, no further question', async () => {
    const { db, sent, closed } = pgDatabase({ affected: 0, rows: [], command: 'PREPARE' });
    expect(await run(db)).toBe('done');
    expect(sent).toEqual(['BEGIN', 'INSERT INTO', 'PREPARE TRANSACTION']);
    expect(closed()).toBe(1);
  });

  it('a PREPARE TRANSACTION answered ROLLBACK prepared nothing: DtmFailureError naming the xid and the fix', async () => {
    const { db, sent, closed } = pgDatabase({ affected: 0, rows: [], command: 'ROLLBACK' });
    const error = await run(db);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect(error).toMatchObject({ gid: 'g1', branchId: '01' });
    expect((error as Error).message).toMatch(/PostgreSQL prepared nothing \(PREPARE TRANSACTION 'g1-01' answered ROLLBACK\).*Fix the code: rethrow the SQL error/);
    // on that failure path only: is the branch's barrier row committed (the code ran COMMIT itself)? No row here
    expect(sent).toEqual(['BEGIN', 'INSERT INTO', 'PREPARE TRANSACTION', 'SELECT reason']);
    expect(closed()).toBe(1);
  });

  it.each([
    ['listed: prepared', ['g1-01'], 'done'],
    ['not listed: FAILURE', ['g2-01'], DtmFailureError],
  ] as const)('an adapter that reports no command tag gets pg_prepared_xacts asked; %s', async (_, listed, outcome) => {
    const { db, sent } = pgDatabase({ affected: 0, rows: [] }, [...listed]);
    const result = await run(db);
    if (typeof outcome === 'string') expect(result).toBe(outcome);
    else expect(result).toBeInstanceOf(outcome);
    expect(sent).toEqual(['BEGIN', 'INSERT INTO', 'PREPARE TRANSACTION', 'SELECT 1', ...(outcome === 'done' ? [] : ['SELECT reason'])]);
  });
});
