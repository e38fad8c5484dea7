import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
// a file of its own, e.g. test/transfers-grpc.e2e-spec.ts (self-contained: its controller and proto are here)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, type INestApplication } from '@nestjs/common';
import { GrpcMethod, Payload, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistry, DtmClient, DtmFailureError, DtmModule, SagaAction, SagaCompensate } from 'nestjs-dtm';
import { callGrpcBranch, freeLocalPort, startDtmServer, waitForTransaction, type DtmTestServer } from 'nestjs-dtm/testing';

const PROTO = `syntax = "proto3";
package bank;
service Bank { rpc Withdraw (Move) returns (Reply); rpc GiveBack (Move) returns (Reply); rpc Deposit (Move) returns (Reply); }
message Move { string account = 1; int64 amount = 2; }
message Reply {}
`;

interface Move {
  account: string;
  amount: number;
}

const balances = new Map<string, number>();

@Controller()
class BankGrpcController {
  @GrpcMethod('Bank', 'Withdraw')
  @SagaAction('withdraw')
  withdraw(@Payload() m: Move) {
    balances.set(m.account, (balances.get(m.account) ?? 0) - m.amount);
  } // returns nothing: the module answers an empty Reply

  @GrpcMethod('Bank', 'GiveBack')
  @SagaCompensate('withdraw')
  giveBack(@Payload() m: Move) {
    balances.set(m.account, (balances.get(m.account) ?? 0) + m.amount);
  }

  @GrpcMethod('Bank', 'Deposit')
  @SagaAction('deposit', { compensate: false })
  deposit(@Payload() m: Move) {
    if (!balances.has(m.account)) throw new DtmFailureError(`no account ${m.account}`); // ABORTED: DTM rolls back
    balances.set(m.account, balances.get(m.account)! + m.amount);
  }
}

describe('transfers over gRPC (e2e, against a real DTM server)', () => {
  let dtm: DtmTestServer;
  let app: INestApplication;
  let dir: string;

  beforeAll(async () => {
    dtm = await startDtmServer();
    dir = mkdtempSync(join(tmpdir(), 'bank-proto-'));
    writeFileSync(join(dir, 'bank.proto'), PROTO);
    const moduleFixture = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: dtm.serverUrl, grpcServer: dtm.grpcAddress, protocol: 'grpc' } })],
      controllers: [BankGrpcController],
    }).compile();
    app = moduleFixture.createNestApplication();
    app.connectMicroservice<MicroserviceOptions>(
      { transport: Transport.GRPC, options: { package: 'bank', protoPath: join(dir, 'bank.proto'), url: `127.0.0.1:${await freeLocalPort()}`, loader: { longs: Number } } },
      { inheritAppConfig: true },
    );
    await app.startAllMicroservices();
    await app.init();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await dtm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    balances.clear();
    balances.set('alice', 100).set('bob', 0);
  });

  it('a saga over gRPC runs both branches and succeeds', async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const result = await client.newSaga(gid).add('withdraw', { account: 'alice', amount: 30 }).add('deposit', { account: 'bob', amount: 30 }).submitAndWait();
    expect(result.status).toBe('succeed');
    expect((await waitForTransaction(dtm.serverUrl, gid)).branches.filter((b) => b.op === 'action').map((b) => b.status)).toEqual(['succeed', 'succeed']);
    expect([balances.get('alice'), balances.get('bob')]).toEqual([70, 30]);
  });

  it('a refused deposit (ABORTED) rolls the withdrawal back', async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const result = await client.newSaga(gid).add('withdraw', { account: 'alice', amount: 10 }).add('deposit', { account: 'zed', amount: 10 }).submitAndWait();
    expect(result.status).toBe('failed');
    expect(result.rollbackReason).toContain('no account zed');
    // DTM's record: the withdrawal compensated; the deposit has no compensation to run (compensate: false)
    const final = await waitForTransaction(dtm.serverUrl, gid);
    expect(final.branches.map((b) => `${b.branchId} ${b.op}:${b.status}`).sort()).toEqual(['01 action:succeed', '01 compensate:succeed', '02 action:failed', '02 compensate:succeed']);
    expect(balances.get('alice')).toBe(100);
  });

  it('a branch called exactly as DTM calls it', async () => {
    const target = app.get(DtmBranchRegistry).target('saga-action', 'deposit', 'grpc'); // 127.0.0.1:<port>/bank.Bank/Deposit
    const protos = { protoPath: join(dir, 'bank.proto'), loader: { longs: Number } }; // to encode an object payload
    const refused = await callGrpcBranch(target, { gid: 'direct-1', op: 'action', body: { account: 'zed', amount: 5 } }, protos);
    expect([refused.status, refused.outcome]).toEqual([409, 'FAILURE']); // ABORTED
    const done = await callGrpcBranch(target, { gid: 'direct-2', op: 'action', body: { account: 'bob', amount: 5 } }, protos);
    expect([done.status, done.outcome]).toEqual([200, 'SUCCESS']);
    expect(balances.get('bob')).toBe(5);
  });
});
