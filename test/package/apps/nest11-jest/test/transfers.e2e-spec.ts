// test/transfers.e2e-spec.ts
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistry } from 'nestjs-dtm';
import { callBranch, startDtmServer, waitForTransaction, type DtmTestServer } from 'nestjs-dtm/testing';
import { Accounts } from './../src/accounts';
import { AppModule } from './../src/app.module';
import { Transfers } from './../src/transfers.service';

describe('transfers (e2e, against a real DTM server)', () => {
  let dtm: DtmTestServer;
  let app: INestApplication;

  beforeAll(async () => {
    dtm = await startDtmServer(); // DTM_BINARY, "dtm" on PATH, ~/.cache/nestjs-dtm, or built with Go
    process.env.DTM_SERVER_URL = dtm.serverUrl;
    const moduleFixture = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleFixture.createNestApplication();
    await app.listen(0, '127.0.0.1'); // DTM runs on this host: it reaches the branches at the listening address
    app.get(Accounts).open('alice', 100);
    app.get(Accounts).open('bob', 0);
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await dtm?.stop();
  });

  it('a transfer runs both branches and succeeds', async () => {
    const result = await app.get(Transfers).transfer('alice', 'bob', 30);
    expect(result.status).toBe('succeed');
    const final = await waitForTransaction(dtm.serverUrl, result.gid);
    expect(final.branches.map((b) => `${b.op}:${b.status}`).sort()).toEqual(['action:succeed', 'action:succeed', 'compensate:prepared', 'compensate:prepared']);
    expect([app.get(Accounts).balance('alice'), app.get(Accounts).balance('bob')]).toEqual([70, 30]);
  });

  it('a refused deposit rolls the withdrawal back', async () => {
    const result = await app.get(Transfers).transfer('alice', 'zed', 10);
    expect(result.status).toBe('failed');
    expect(result.rollbackReason).toContain('no account zed');
    expect(app.get(Accounts).balance('alice')).toBe(70);
  });

  it('a branch called exactly as DTM calls it', async () => {
    const url = app.get(DtmBranchRegistry).target('saga-action', 'withdraw', 'http');
    const refused = await callBranch(url, { gid: 'direct-1', op: 'action', body: { account: 'alice', amount: 1000 } });
    expect([refused.status, refused.outcome]).toEqual([409, 'FAILURE']);
    const done = await callBranch(url, { gid: 'direct-2', op: 'action', body: { account: 'alice', amount: 5 } });
    expect([done.status, done.outcome]).toEqual([200, 'SUCCESS']);
    expect(app.get(Accounts).balance('alice')).toBe(65);
  });
});
