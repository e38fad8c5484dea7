// The module among the rest of a real Nest app, against the real DTM: DtmModule set up by more than
// one module of the app.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Module, Post, type INestApplication } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { BranchContext, DtmClient, DtmModule, DtmUsageError, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, UseBarrier, ensureBarrierSchema, pgBarrierDatabase, type BranchInfo } from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { harness, queryTrans } from '../support/harness.js';

let pool: pg.Pool;
/** The calls the handlers received, as `<handler> <gid>`. */
const seen: string[] = [];

@Controller('mix-pay')
@UseBarrier('pg')
class PayController {
  @Post('debit')
  @SagaAction('mixDebit')
  async debit(@Body() _m: unknown, @BranchContext() b: BranchInfo) {
    seen.push(`debit ${b.gid}`);
  }

  @Post('debit-compensate')
  @SagaCompensate('mixDebit')
  undo(@BranchContext() b: BranchInfo) {
    seen.push(`undo ${b.gid}`);
  }
}

@Controller('mix-hold')
class HoldController {
  @Post('try')
  @TccTry('mixHold')
  hold(@BranchContext() b: BranchInfo) {
    seen.push(`try ${b.gid}`);
  }

  @Post('confirm')
  @TccConfirm('mixHold')
  confirm(@BranchContext() b: BranchInfo) {
    seen.push(`confirm ${b.gid}`);
  }

  @Post('cancel')
  @TccCancel('mixHold')
  cancel(@BranchContext() b: BranchInfo) {
    seen.push(`cancel ${b.gid}`);
  }
}

type Adapter = 'express' | 'fastify';

/** Creates and starts an app of `root` on `adapter`, listening on 127.0.0.1. */
async function listen(root: object, adapter: Adapter): Promise<INestApplication> {
  const module = await Test.createTestingModule({ imports: [root as never] }).compile();
  const options = { logger: false as const, forceCloseConnections: true };
  const app = adapter === 'fastify' ? module.createNestApplication(new FastifyAdapter(), options) : module.createNestApplication(options);
  try {
    await app.listen(0, '127.0.0.1');
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

beforeAll(async () => {
  const dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 6 });
  await ensureBarrierSchema(pgBarrierDatabase(pool), {});
});
afterAll(async () => {
  await pool?.end();
});

describe.each(['express', 'fastify'] as const)('DtmModule set up by two modules of one app, on %s', (adapter) => {
  it.each([
    ['different options (a barrier connection in one only)', false],
    ['the same options', true],
  ])('%s: start-up fails with a DtmUsageError naming both modules and saying to set it up once, not a misleading "unknown barrier" or an uncaught Fastify error', async (_title, same) => {
    const config = { serverUrl: harness().dtm.serverUrl };
    @Module({ imports: [DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } })], controllers: [PayController] })
    class PaymentsModule {}
    @Module({ imports: [same ? DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } }) : DtmModule.forRoot({ config })], controllers: [HoldController] })
    class HoldsModule {}
    @Module({ imports: [PaymentsModule, HoldsModule] })
    class ShopModule {}
    const error = await listen(ShopModule, adapter).then(
      async (app) => {
        await app.close();
        return undefined;
      },
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toMatch(/^DtmModule is set up 2 times in this app \(DtmModule\.forRoot \/ forRootAsync imported by PaymentsModule, HoldsModule\)/);
    expect((error as Error).message).toContain('isGlobal: true');
  });

  it('set up once in a module that exports it, used by two feature modules: a saga behind the barrier and a TCC both succeed', async () => {
    const config = { serverUrl: harness().dtm.serverUrl };
    @Module({ imports: [DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } })], exports: [DtmModule] })
    class DtmSetupModule {}
    @Module({ imports: [DtmSetupModule], controllers: [PayController] })
    class PaymentsModule {}
    @Module({ imports: [DtmSetupModule], controllers: [HoldController] })
    class HoldsModule {}
    @Module({ imports: [PaymentsModule, HoldsModule] })
    class ShopModule {}
    const app = await listen(ShopModule, adapter);
    try {
      const dtm = app.get(DtmClient);
      const saga = await dtm.generateGid();
      await dtm.newSaga(saga).add('mixDebit', { amount: 1 }).submitAndWait({ timeout: 10 });
      const tcc = await dtm.generateGid();
      await dtm.tccGlobalTransactionAndWait(tcc, async (t) => void (await t.callBranch({ amount: 1 }, 'mixHold')), {}, { timeout: 10 });
      expect((await queryTrans(saga)).transaction?.status).toBe('succeed');
      expect((await queryTrans(tcc)).transaction?.status).toBe('succeed');
      expect(seen.filter((s) => s.endsWith(saga) || s.endsWith(tcc))).toEqual([`debit ${saga}`, `try ${tcc}`, `confirm ${tcc}`]);
      const rows = (await pool.query('SELECT branch_id, op FROM dtm_barrier.barrier WHERE gid = $1', [saga])).rows;
      expect(rows).toEqual([{ branch_id: '01', op: 'action' }]);
    } finally {
      await app.close();
    }
  });
});
