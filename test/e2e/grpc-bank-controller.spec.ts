// docs/grpc.md's bank.controller.ts, run as a user runs it: grpc-bank-controller.recipe.ts is the page's
// block verbatim (test/unit/docs.spec.ts checks it), served as the page's main.ts serves it (a hybrid
// app: the HTTP routes and the gRPC methods of package bank), its barrier on this file's PostgreSQL
// database. Each handler is both an HTTP route and a gRPC method, its payload read with @Payload():
// sagas over either transport move the money, and a refused withdrawal rolls back (the refused one's
// compensation a null one the barrier skips, the earlier one's given back).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { DtmClient, DtmModule, ensureBarrierSchema, pgBarrierDatabase } from 'nestjs-dtm';
import pg from 'pg';
import { fileDatabases } from '../support/databases.js';
import { harness, queryTrans } from '../support/harness.js';
import { freePort } from '../support/services/process.js';
import { BankController } from './grpc-bank-controller.recipe.js';

/** The page's proto: rpc Withdraw(Move) returns (Reply), and the compensation's Deposit. */
const PROTO = `syntax = "proto3";
package bank;
service Bank { rpc Withdraw (Move) returns (Reply); rpc Deposit (Move) returns (Reply); }
message Move { int64 account = 1; int64 amount = 2; }
message Reply {}
`;

let app: INestApplication;
let pool: pg.Pool;
let dir: string;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url });
  await ensureBarrierSchema(pgBarrierDatabase(pool));
  await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-bank-proto-'));
  writeFileSync(join(dir, 'bank.proto'), PROTO);
  const grpcAddress = `127.0.0.1:${await freePort()}`;
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress },
        barrierConnections: { pg: pgBarrierDatabase(pool) },
      }),
    ],
    controllers: [BankController],
  }).compile();
  app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
  app.connectMicroservice<MicroserviceOptions>(
    { transport: Transport.GRPC, options: { package: 'bank', protoPath: join(dir, 'bank.proto'), url: grpcAddress, loader: { longs: Number, defaults: true } } },
    { inheritAppConfig: true },
  );
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
});

afterAll(async () => {
  await app?.close();
  await pool?.end();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const balances = async () => (await pool.query<{ id: number; balance: number }>('SELECT id, balance FROM account ORDER BY id')).rows.map((r) => r.balance);

describe.each(['http', 'grpc'] as const)("docs/grpc.md's BankController over %s", (protocol) => {
  beforeAll(async () => {
    await pool.query('TRUNCATE account');
    await pool.query('INSERT INTO account (id, balance) VALUES (1, 100), (2, 5)');
  });

  it('a saga of two withdrawals takes both', async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const final = await client.newSaga(gid, { protocol }).add('withdraw', { account: 1, amount: 30 }).add('withdraw', { account: 2, amount: 5 }).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(await balances()).toEqual([70, 0]);
  });

  it('a withdrawal over the balance is refused (FAILURE): DTM gives the first back, and the refused one gives nothing back', async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const final = await client.newSaga(gid, { protocol }).add('withdraw', { account: 1, amount: 20 }).add('withdraw', { account: 2, amount: 1 }).submitAndWait();
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain(`insufficient funds (${gid})`);
    expect(await balances()).toEqual([70, 0]);
    const record = await queryTrans(gid);
    expect(record.branches.map((b) => `${b.branch_id} ${b.op}:${b.status}`).sort()).toEqual(['01 action:succeed', '01 compensate:succeed', '02 action:failed', '02 compensate:succeed']);
    expect(record.branches.every((b) => b.url?.startsWith(protocol === 'http' ? 'http://127.0.0.1:' : '127.0.0.1:'))).toBe(true);
  });
});
