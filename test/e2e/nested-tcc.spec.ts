// Nested TCC (tccFromBranch) in decorated Try handlers, over HTTP and gRPC, against the real DTM
// server: the app's own @TccTry handlers nest a TCC whose sub-branches are recorder targets.
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Injectable, Post, type INestApplication } from '@nestjs/common';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { BarrierTx, BranchContext, DtmClient, DtmFailureError, DtmModule, DtmUnavailableError, ensureBarrierSchema, pgBarrierDatabase, TccCancel, TccConfirm, TccTry, type BranchInfo, type DtmProtocol } from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { branchLines, PROTOCOLS } from '../support/fixtures.js';
import { callGrpc, TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { harness, queryTrans } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { freePort } from '../support/services/process.js';

/**
 * The phase-2 calls DTM made (a sub-branch's Confirm / Cancel calls, the outer handler's lines), as a set: DTM calls them
 * at least once, and another test file's /resetCronTime on the shared DTM can have its cron call one again meanwhile.
 */
const phase2 = (calls: readonly unknown[]) => new Set(calls);

/** `tests.Move`, the payload of the outer branch. */
interface Move {
  account: number;
  amount: number;
  fail: string;
}

/** Where the nested sub-branches go (set by the test), and what the nesting Tries caught. */
@Injectable()
class Nesting {
  /** The sub-branch's targets on the transport of the call being served. */
  targets!: (protocol: DtmProtocol) => { try: string; confirm: string; cancel: string; payload: string | Buffer };
  /** The errors of sub-branch calls the Tries caught (and went on after). */
  swallowed: unknown[] = [];
  /** The outer branch's Confirm / Cancel calls, `op gid`. */
  outer: string[] = [];
  /** The Cancels of the branch behind the barrier whose body ran (not a null compensation), `gid`. */
  compensated: string[] = [];

  /** The HTTP Try nests this app's gRPC-only TCC branch `nestGrpc` instead (which nests the targets in turn). */
  viaOwnGrpc = false;
  /** How many nested TCCs a Try makes, one after the other (each its own `tccFromBranch()`, trying one sub-branch). */
  nestedTccs = 1;
  /** The Try lets a sub-branch call's error out (does not catch it). */
  uncaught = false;
  /** Each nested TCC is made on a copy of the Try's `BranchInfo` (`{ ...branch }`). */
  onCopies = false;

  /** A Try's body: nests a TCC, tries one sub-branch, catches its failure and answers success all the same. */
  async tryAndSwallow(dtm: DtmClient, branch: BranchInfo, protocol: DtmProtocol): Promise<void> {
    const sub = dtm.tccFromBranch(branch);
    if (protocol === 'http' && this.viaOwnGrpc) {
      await sub.callBranch({ account: 1, amount: 5, fail: '' }, 'nestGrpc').catch((err: unknown) => void this.swallowed.push(err));
      return;
    }
    const t = this.targets(protocol);
    if (this.uncaught) {
      for (let n = 0; n < this.nestedTccs; n++) await dtm.tccFromBranch(this.onCopies ? { ...branch } : branch).callBranch(t.payload, t.try, t.confirm, t.cancel);
      return;
    }
    await sub.callBranch(t.payload, t.try, t.confirm, t.cancel).catch((err: unknown) => void this.swallowed.push(err));
    // a Try nesting two sub-services, each through a TCC of its own (or one made in a loop)
    for (let more = 1; more < this.nestedTccs; more++) {
      await dtm
        .tccFromBranch(branch)
        .callBranch(t.payload, t.try, t.confirm, t.cancel)
        .catch((err: unknown) => void this.swallowed.push(err));
    }
  }
}

@Controller('nest')
class NestingController {
  constructor(
    private readonly dtm: DtmClient,
    private readonly nesting: Nesting,
  ) {}

  @Post('try')
  @TccTry('nest')
  async try(@Body() _body: unknown, @BranchContext() branch: BranchInfo) {
    await this.nesting.tryAndSwallow(this.dtm, branch, 'http');
    return { tried: true };
  }

  @Post('confirm')
  @TccConfirm('nest')
  confirm(@BranchContext() branch: BranchInfo) {
    this.nesting.outer.push(`confirm ${branch.gid}`);
  }

  @Post('cancel')
  @TccCancel('nest')
  cancel(@BranchContext() branch: BranchInfo) {
    this.nesting.outer.push(`cancel ${branch.gid}`);
  }

  /** Behind the barrier on PostgreSQL: takes 5 from account 1, then nests. */
  @Post('pg-try')
  @TccTry('nestPg', { barrier: 'pg' })
  async pgTry(@Body() _body: unknown, @BarrierTx() tx: pg.PoolClient, @BranchContext() branch: BranchInfo) {
    await tx.query('UPDATE account SET balance = balance - 5 WHERE id = 1');
    await this.nesting.tryAndSwallow(this.dtm, branch, 'http');
    return { tried: true };
  }

  @Post('pg-confirm')
  @TccConfirm('nestPg', { barrier: 'pg' })
  pgConfirm(@BranchContext() branch: BranchInfo) {
    this.nesting.outer.push(`confirm ${branch.gid}`);
  }

  @Post('pg-cancel')
  @TccCancel('nestPg', { barrier: 'pg' })
  async pgCancel(@BarrierTx() tx: pg.PoolClient, @BranchContext() branch: BranchInfo) {
    await tx.query('UPDATE account SET balance = balance + 5 WHERE id = 1');
    this.nesting.compensated.push(branch.gid);
  }

  @GrpcMethod('PgBank', 'TccOutTry')
  @TccTry('nestGrpc')
  async grpcTry(@Payload() _move: Move, @BranchContext() branch: BranchInfo) {
    await this.nesting.tryAndSwallow(this.dtm, branch, 'grpc');
    return { message: 'tried' };
  }

  @GrpcMethod('PgBank', 'TccOutConfirm')
  @TccConfirm('nestGrpc')
  grpcConfirm(@Payload() _move: Move, @BranchContext() branch: BranchInfo) {
    this.nesting.outer.push(`confirm ${branch.gid}`);
  }

  @GrpcMethod('PgBank', 'TccOutCancel')
  @TccCancel('nestGrpc')
  grpcCancel(@Payload() _move: Move, @BranchContext() branch: BranchInfo) {
    this.nesting.outer.push(`cancel ${branch.gid}`);
  }
}

/** A participant served over HTTP only, whose configuration sets no grpc_server: its Try nests a TCC. */
@Controller('plain')
class HttpOnlyNestingController {
  constructor(
    private readonly dtm: DtmClient,
    private readonly nesting: Nesting,
  ) {}

  @Post('try')
  @TccTry('plainNest')
  async try(@Body() _body: unknown, @BranchContext() branch: BranchInfo) {
    await this.nesting.tryAndSwallow(this.dtm, branch, 'http');
    return { tried: true };
  }

  @Post('confirm')
  @TccConfirm('plainNest')
  confirm() {}

  @Post('cancel')
  @TccCancel('plainNest')
  cancel() {}
}

describe('nested TCC in a decorated Try', () => {
  let app: INestApplication;
  let recorder: Recorder;
  let nesting: Nesting;
  let client: DtmClient;
  let pool: pg.Pool;
  let appUrl: string;
  let grpcAppAddress: string;

  beforeAll(async () => {
    recorder = await startRecorder();
    pool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url, max: 5 });
    await pool.query('DROP TABLE IF EXISTS account');
    await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
    await pool.query('INSERT INTO account VALUES (1, 100)');
    const barrier = pgBarrierDatabase(pool);
    await ensureBarrierSchema(barrier, { table: 'dtm_barrier' });
    const grpcAddress = `127.0.0.1:${await freePort()}`;
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress, barrierTable: 'dtm_barrier' }, barrierConnections: { pg: barrier }, grpcProtos: TESTS_GRPC_PROTOS })],
      controllers: [NestingController],
      providers: [Nesting],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    app.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    client = app.get(DtmClient);
    nesting = app.get(Nesting);
    appUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    grpcAppAddress = grpcAddress;
  });
  afterAll(async () => {
    await app?.close();
    await recorder?.close();
    await pool?.end();
  });
  beforeEach(() => {
    recorder.reset();
    nesting.swallowed = [];
    nesting.outer = [];
    nesting.compensated = [];
    nesting.viaOwnGrpc = false;
    nesting.nestedTccs = 1;
    nesting.uncaught = false;
    nesting.onCopies = false;
    nesting.targets = (protocol) =>
      protocol === 'grpc'
        ? { try: recorder.grpcTargetFor('/SubTry'), confirm: recorder.grpcTargetFor('/SubConfirm'), cancel: recorder.grpcTargetFor('/SubCancel'), payload: Buffer.from('{"sub":1}') }
        : { try: recorder.urlFor('/SubTry'), confirm: recorder.urlFor('/SubConfirm'), cancel: recorder.urlFor('/SubCancel'), payload: '{"sub":1}' };
  });

  describe.each(PROTOCOLS)('over %s', (protocol) => {
    const branch = protocol === 'grpc' ? 'nestGrpc' : 'nest';
    const payload = { account: 1, amount: 5, fail: '' };

    it('a Try that catches the FAILURE of its nested sub-Try and returns answers FAILURE all the same: DTM rolls back, cancels the sub-branch, confirms nothing', async () => {
      recorder.answer('/SubTry', { status: 409, body: { dtm_result: 'FAILURE', message: 'sub declined' } });
      const gid = await client.generateGid();
      const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(payload, branch), { protocol }).catch((e: unknown) => e);
      expect(nesting.swallowed).toHaveLength(1);
      expect(nesting.swallowed[0]).toBeInstanceOf(DtmFailureError);
      expect(error).toBeInstanceOf(DtmFailureError);
      expect((error as Error).message).toMatch(/went on after the Try of its sub-branch 0101 failed .*sub declined/);
      const final = await client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain('sub declined');
      expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
      expect(recorder.callsTo('/SubConfirm', gid)).toHaveLength(0);
      expect(phase2(recorder.callsTo('/SubCancel', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101']));
      expect(phase2(nesting.outer.filter((line) => line.endsWith(gid)))).toEqual(new Set([`cancel ${gid}`]));
    });

    it('a Try whose nested sub-Try succeeds answers success: DTM confirms the branch and its sub-branch', async () => {
      const gid = await client.generateGid();
      await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(payload, branch), { protocol });
      const final = await client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('succeed');
      expect(nesting.swallowed).toEqual([]);
      expect(phase2(recorder.callsTo('/SubConfirm', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101']));
      expect(recorder.callsTo('/SubCancel', gid)).toHaveLength(0);
      expect(phase2(nesting.outer.filter((line) => line.endsWith(gid)))).toEqual(new Set([`confirm ${gid}`]));
    });

    it('a Try that makes two nested TCCs (tccFromBranch() twice on its BranchInfo) numbers their sub-branches 0101, 0102: DTM holds both, confirms both', async () => {
      nesting.nestedTccs = 2;
      const gid = await client.generateGid();
      await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(payload, branch), { protocol });
      expect(nesting.swallowed).toEqual([]);
      const final = await client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed', '0102 cancel prepared', '0102 confirm succeed']);
      expect(recorder.callsTo('/SubTry', gid).map((c) => c.query.branch_id)).toEqual(['0101', '0102']);
      expect(phase2(recorder.callsTo('/SubConfirm', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101', '0102']));
      expect(recorder.callsTo('/SubCancel', gid)).toHaveLength(0);
    });

    it('a Try that makes two nested TCCs, each on a copy of its BranchInfo, and lets their errors out: the copy\'s second 0101 is refused by DTM, and the Try answers FAILURE saying why (not a bare 500 "storage: UniqueKeyConflict"); DTM rolls back', async () => {
      nesting.nestedTccs = 2;
      nesting.uncaught = true;
      nesting.onCopies = true;
      const gid = await client.generateGid();
      const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(payload, branch), { protocol }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmFailureError);
      expect((error as DtmFailureError).reason).toContain(`DTM already holds sub-branch 0101 of tcc ${gid} and refused to register it again`);
      expect((error as DtmFailureError).reason).toContain('never a copy');
      const final = await client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
      expect(recorder.callsTo('/SubTry', gid)).toHaveLength(1);
      expect(recorder.callsTo('/SubConfirm', gid)).toHaveLength(0);
    });

    it('a Try nesting a TCC, without a barrier, called a second time with the same branch id (its caller called it again): the second call is answered FAILURE saying the Try ran before and to put it behind the barrier, not a bare 500; DTM keeps the first call\'s sub-branch and confirms it once', async () => {
      nesting.uncaught = true;
      const gid = await client.generateGid();
      let again: { status: number; text: string } | undefined;
      await client.tccGlobalTransaction(
        gid,
        async (tcc) => {
          await tcc.callBranch(payload, branch);
          // the same Try called again, as its caller's retry would (branch 01)
          const query = { gid, trans_type: 'tcc', branch_id: '01', op: 'try', dtm: protocol === 'grpc' ? harness().dtm.grpcAddress : harness().dtm.serverUrl };
          if (protocol === 'grpc') again = await callGrpc(`${grpcAppAddress}/tests.PgBank/TccOutTry`, payload, query);
          else {
            const res = await fetch(`${appUrl}/nest/try?${new URLSearchParams(query)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
            again = { status: res.status, text: await res.text() };
          }
        },
        { protocol },
      );
      expect(again?.status).toBe(409);
      expect(again?.text).toContain(`DTM already holds sub-branch 0101 of tcc ${gid}`);
      expect(again?.text).toContain('behind the barrier');
      const final = await client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
      expect(recorder.callsTo('/SubTry', gid)).toHaveLength(1);
      // confirmed: the first call's 0101 only (DTM holds no second one, above)
      expect(phase2(recorder.callsTo('/SubConfirm', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101']));
    });
  });

  it('a Try nesting a TCC behind the barrier, called a second time with the same branch id: the barrier answers the second call success without running it (nothing taken twice, no second registration); DTM confirms once', async () => {
    nesting.uncaught = true;
    const before = Number((await pool.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance);
    const gid = await client.generateGid();
    let again: Response | undefined;
    await client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch({ account: 1, amount: 5, fail: '' }, 'nestPg');
      const query = new URLSearchParams({ gid, trans_type: 'tcc', branch_id: '01', op: 'try', dtm: harness().dtm.serverUrl });
      again = await fetch(`${appUrl}/nest/pg-try?${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"account":1,"amount":5,"fail":""}' });
    });
    expect(again?.status).toBe(200);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/SubTry', gid)).toHaveLength(1);
    expect(phase2(recorder.callsTo('/SubConfirm', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101']));
    expect(Number((await pool.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance)).toBe(before - 5);
    await pool.query('UPDATE account SET balance = $1 WHERE id = 1', [before]); // the next tests start from it
  });

  it("a gRPC TCC calling an HTTP Try that nests a gRPC sub-branch: DTM holds the transaction as gRPC, so the sub-Try is called and registered over gRPC, and DTM confirms it", async () => {
    nesting.targets = () => ({ try: recorder.grpcTargetFor('/SubTry'), confirm: recorder.grpcTargetFor('/SubConfirm'), cancel: recorder.grpcTargetFor('/SubCancel'), payload: Buffer.from('{"sub":1}') });
    const gid = await client.generateGid();
    // 'nest' is an HTTP route only: the gRPC transaction calls its Try over HTTP (dtm= is server_url)
    await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 1, amount: 5, fail: '' }, 'nest'), { protocol: 'grpc' });
    expect(nesting.swallowed).toEqual([]);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
    expect(recorder.callsTo('/SubTry', gid).map((c) => c.method)).toEqual(['GRPC']);
    expect(phase2(recorder.callsTo('/SubConfirm', gid).map((c) => `${c.method} ${c.query.branch_id}`))).toEqual(new Set(['GRPC 0101']));
    expect(recorder.callsTo('/SubCancel', gid)).toHaveLength(0);
    expect(phase2(nesting.outer.filter((line) => line.endsWith(gid)))).toEqual(new Set([`confirm ${gid}`]));
  });

  it.each([
    ['succeeds', 200, 'succeed'],
    ['answers FAILURE', 409, 'failed'],
  ] as const)("a gRPC TCC calling an HTTP Try that nests an http:// sub-branch whose Try %s: the sub-branch is registered over HTTP, and DTM confirms or cancels it over HTTP with its JSON body", async (_case, subTry, status) => {
    recorder.answer('/SubTry', subTry === 409 ? { status: 409, body: { dtm_result: 'FAILURE', message: 'sub declined' } } : 200);
    const gid = await client.generateGid();
    const outcome = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 1, amount: 5, fail: '' }, 'nest'), { protocol: 'grpc' }).catch((e: unknown) => e);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe(status);
    expect((await queryTrans(gid)).transaction?.protocol).toBe('grpc');
    const phase2Path = status === 'succeed' ? '/SubConfirm' : '/SubCancel';
    const [tried, ...then] = recorder.callsFor(gid).map((c) => `${c.method} ${c.path} ${c.query.branch_id} ${c.query.op} ${c.body}`);
    expect(tried).toBe(`POST /SubTry 0101 try {"sub":1}`);
    expect(phase2(then)).toEqual(new Set([`POST ${phase2Path} 0101 ${phase2Path === '/SubConfirm' ? 'confirm' : 'cancel'} {"sub":1}`]));
    if (status === 'failed') expect(outcome).toBeInstanceOf(DtmFailureError);
    expect(phase2(nesting.outer.filter((line) => line.endsWith(gid)))).toEqual(new Set([`${status === 'succeed' ? 'confirm' : 'cancel'} ${gid}`]));
  });

  it("a gRPC TCC calling an HTTP Try that nests this app's gRPC-only TCC branch by name: it is called over gRPC, DTM confirms both levels", async () => {
    nesting.viaOwnGrpc = true;
    const gid = await client.generateGid();
    await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 1, amount: 5, fail: '' }, 'nest'), { protocol: 'grpc' });
    expect(nesting.swallowed).toEqual([]);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed', '010101 cancel prepared', '010101 confirm succeed']);
    expect(recorder.callsTo('/SubTry', gid).map((c) => c.method)).toEqual(['GRPC']);
    // both levels confirmed (DTM's record above), each at least once
    const outer = nesting.outer.filter((line) => line.endsWith(gid));
    expect(outer.length).toBeGreaterThanOrEqual(2);
    expect(phase2(outer)).toEqual(new Set([`confirm ${gid}`]));
  });

  it('a gRPC TCC calling the HTTP Try of a participant without grpc_server, whose Try nests a gRPC sub-branch: the sub-branch\'s registration fails saying that the nested TCC follows DTM onto gRPC and that grpc_server must be set', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, timeout: 2 } })],
      controllers: [HttpOnlyNestingController],
      providers: [Nesting],
    }).compile();
    const plain = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await plain.listen(0, '127.0.0.1');
    try {
      const plainNesting = plain.get(Nesting);
      plainNesting.targets = () => ({ try: recorder.grpcTargetFor('/SubTry'), confirm: recorder.grpcTargetFor('/SubConfirm'), cancel: recorder.grpcTargetFor('/SubCancel'), payload: Buffer.from('{"sub":1}') });
      const url = await plain.getUrl();
      const gid = await client.generateGid();
      const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 1 }, `${url}/plain/try`, `${url}/plain/confirm`, `${url}/plain/cancel`), { protocol: 'grpc' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmFailureError);
      expect(plainNesting.swallowed).toHaveLength(1);
      const swallowed = plainNesting.swallowed[0] as Error;
      expect(swallowed).toBeInstanceOf(DtmUnavailableError);
      expect(swallowed.message).toContain(`DTM holds tcc ${gid} as gRPC and its sub-branch can be called over gRPC only`);
      expect(swallowed.message).toContain('lynx.dtm.grpc_server (localhost:36790, the default: this app does not set it), which did not answer: set grpc_server');
      expect(swallowed.message).toMatch(/could not reach localhost:36790\/dtmgimp.Dtm\/RegisterBranch/);
      expect(recorder.callsTo('/SubTry', gid)).toHaveLength(0);
      expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    } finally {
      await plain.close();
    }
  });

  it('behind the barrier: the Try\'s local transaction is rolled back when it swallowed its sub-Try\'s FAILURE (checked before it commits): nothing taken, and the Cancel finds nothing to undo (a null compensation)', async () => {
    recorder.answer('/SubTry', { status: 409, body: { dtm_result: 'FAILURE', message: 'sub declined' } });
    const gid = await client.generateGid();
    const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 1 }, 'nestPg')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(phase2(recorder.callsTo('/SubCancel', gid).map((c) => c.query.branch_id))).toEqual(new Set(['0101']));
    expect(recorder.callsTo('/SubConfirm', gid)).toHaveLength(0);
    expect((await pool.query('SELECT balance FROM account WHERE id = 1')).rows).toEqual([{ balance: 100 }]);
    expect(nesting.compensated).toEqual([]);
  });
});
