// Branches by name across services, with typed payloads: three Nest apps, each its own process, on
// the real DTM server. orders.app.ts (the caller) adds branches of bank.app.ts (HTTP) and of
// stock.app.ts (gRPC only) by service and name, from the contracts all three import
// (shop-contracts.ts); the participants publish their manifests (publish_branches). Each service is
// configured at a stable address (a TCP forwarder here, as a load balancer or a DNS name would be)
// in front of the instance, whose branch targets are its own address: so a participant restarted
// on another port is found again through its manifest.
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { credentials, Client, Metadata } from '@grpc/grpc-js';
import { harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { settledWithin } from '../support/fixtures.js';
import { freePort, logTail, minimalEnv, runDirFrom, startProcess, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { STOCK_PROTO } from '../support/grpc.js';
import protoLoader from '@grpc/proto-loader';
import { startDtmApp } from '../support/dtm-app.js';
import { startRecorder } from '../support/recorder.js';

const root = resolve(import.meta.dirname, '..', '..');

/** A TCP forwarder at a fixed port to wherever `to` currently is: the service's stable address. */
interface Front {
  port: number;
  to: number;
  server: Server;
  /** Closes the forwarder and every connection through it. */
  close(): Promise<void>;
}

async function startFront(to: number): Promise<Front> {
  const front = { port: await freePort(), to } as Front;
  const open = new Set<() => void>();
  front.server = createServer((socket) => {
    const upstream = connect(front.to, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
      open.delete(close);
    };
    open.add(close);
    for (const end of [socket, upstream]) {
      end.on('error', close);
      end.on('close', close);
    }
  });
  front.close = () =>
    new Promise<void>((done) => {
      front.server.close(() => done());
      for (const close of [...open]) close();
    });
  await new Promise<void>((done) => front.server.listen(front.port, '127.0.0.1', done));
  return front;
}

/** Starts `file` (compiled, in .build/test/e2e) as its own process with `env`; waits for its "ready" unless told not to. */
async function startApp(name: string, file: string, env: Record<string, string>, ready: (() => Promise<boolean>) | undefined): Promise<ManagedProcess> {
  const runDir = runDirFrom(harness().runDir);
  const proc = startProcess({
    name,
    command: process.execPath,
    args: [join(root, '.build', 'test', 'e2e', file)],
    cwd: root,
    env: minimalEnv({ DTM_URL: harness().dtm.serverUrl, DTM_GRPC: harness().dtm.grpcAddress, ...env }),
    runDir,
    logFile: join(runDir.path, `${name}-${process.pid}-${Date.now()}.log`),
  });
  if (ready) await waitUntil(name, ready, { timeoutMs: 20_000, process: proc });
  return proc;
}

const httpReady = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/`)).status === 404;

const stockDefinition = protoLoader.loadSync(STOCK_PROTO, { longs: Number, defaults: true });

/** The stock service's Level: its available, reserved and shipped widgets (at its gRPC port; `authorization`: for a guarded one). */
function stockLevel(port: number, authorization?: string): Promise<{ available: number; reserved: number; shipped: number }> {
  const method = (stockDefinition['stock.Stock'] as Record<string, { requestSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): unknown }>).Level;
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const metadata = new Metadata();
  if (authorization) metadata.set('authorization', authorization);
  return new Promise((done, fail) => {
    client.makeUnaryRequest('/stock.Stock/Level', method.requestSerialize, method.responseDeserialize as (b: Buffer) => { available: number; reserved: number; shipped: number }, { sku: 'widget' }, metadata, { deadline: Date.now() + 5000 }, (err, reply) => {
      client.close();
      if (err) fail(err);
      else done(reply!);
    });
  });
}

const stockReady = (port: number, authorization?: string) => async () => {
  await stockLevel(port, authorization);
  return true;
};

interface BankState {
  balances: Record<string, number>;
  held: number;
  calls: string[];
}

interface Outcome {
  gid: string;
  status?: string;
  rollbackReason?: string;
  error?: string;
  problem?: string;
  message?: string;
}

let bankPort: number;
let stockPort: number;
let ordersPort: number;
let bank: ManagedProcess;
let stock: ManagedProcess;
let orders: ManagedProcess;
let bankFront: Front;
let stockFront: Front;

const bankState = async (): Promise<BankState> => (await fetch(`http://127.0.0.1:${bankPort}/bank/state`)).json() as Promise<BankState>;

async function order(path: 'saga' | 'tcc' | 'msg', body: object, port = ordersPort): Promise<Outcome> {
  const answer = await fetch(`http://127.0.0.1:${port}/orders/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(answer.status).toBe(201);
  return (await answer.json()) as Outcome;
}

const alice = (amount: number) => ({ account: 'alice', amount });
const widgets = (qty: number) => ({ sku: 'widget', qty });

/** The orders app's environment: the services at their stable addresses. */
const ordersEnv = (extra: Record<string, string> = {}) => ({
  PORT: String(ordersPort),
  BANK_URL: `http://127.0.0.1:${bankFront.port}`,
  STOCK_GRPC: `127.0.0.1:${stockFront.port}`,
  STOCK_REFRESH: '1',
  // the bank's manifest is fetched again only once a call to one of its targets failed: never at an age that depends on how long the tests before took
  BANK_REFRESH: '3600',
  ...extra,
});

beforeAll(async () => {
  [bankPort, stockPort, ordersPort] = await Promise.all([freePort(), freePort(), freePort()]);
  [bank, stock] = await Promise.all([
    startApp('bank', 'bank.app.js', { PORT: String(bankPort) }, httpReady(bankPort)),
    startApp('stock', 'stock.app.js', { GRPC_PORT: String(stockPort) }, stockReady(stockPort)),
  ]);
  [bankFront, stockFront] = await Promise.all([startFront(bankPort), startFront(stockPort)]);
  orders = await startApp('orders', 'orders.app.js', ordersEnv(), httpReady(ordersPort));
}, 60_000);

afterAll(async () => {
  await Promise.all([orders?.stop(), bank?.stop(), stock?.stop()]);
  await Promise.all([bankFront?.close(), stockFront?.close()]);
});

describe('branches by name across services', () => {
  it('publishes a manifest: each branch with its kind, ops and targets, nothing else (no keys, no configuration)', async () => {
    const answer = await fetch(`http://127.0.0.1:${bankPort}/dtm/branches`);
    expect(answer.status).toBe(200);
    const manifest = (await answer.json()) as { format: string; branches: { name: string; kind: string; ops: Record<string, Record<string, string>> }[] };
    const base = `http://127.0.0.1:${bankPort}/bank`;
    expect(manifest).toEqual({
      format: 'nestjs-dtm.branches/1',
      branches: [
        { name: 'credit', kind: 'msg', ops: { action: { http: `${base}/credit` } } },
        { name: 'deposit', kind: 'saga', ops: { action: { http: `${base}/deposit` } } },
        { name: 'hold', kind: 'tcc', ops: { try: { http: `${base}/hold-try` }, confirm: { http: `${base}/hold-confirm` }, cancel: { http: `${base}/hold-cancel` } } },
        { name: 'withdraw', kind: 'saga', ops: { action: { http: `${base}/withdraw` }, compensate: { http: `${base}/withdraw-revert` } } },
      ],
    });
  });

  it('saga: a step of the bank (HTTP) and one of the stock (gRPC), both by name; DTM records the targets of their manifests and both ran', async () => {
    const before = await stockLevel(stockPort);
    const outcome = await order('saga', { movement: alice(10), item: widgets(2) });
    expect(outcome).toMatchObject({ status: 'succeed' });
    const record = await queryTrans(outcome.gid);
    expect(record.transaction?.steps).toEqual([
      { action: `http://127.0.0.1:${bankPort}/bank/withdraw`, compensate: `http://127.0.0.1:${bankPort}/bank/withdraw-revert` },
      { action: `127.0.0.1:${stockPort}/stock.Stock/Take`, compensate: `127.0.0.1:${stockPort}/stock.Stock/TakeRevert` },
    ]);
    expect(record.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 compensate prepared', '01 action succeed', '02 compensate prepared', '02 action succeed']);
    expect((await bankState()).calls).toContain('withdraw alice 10');
    expect((await stockLevel(stockPort)).available).toBe(before.available - 2);
  });

  it('saga: a refused step of the stock rolls back the bank step by name: DTM records failed with the stock\'s reason', async () => {
    const balance = (await bankState()).balances.alice;
    const outcome = await order('saga', { movement: alice(5), item: widgets(1000) });
    expect(outcome).toMatchObject({ status: 'failed' });
    expect(outcome.rollbackReason).toContain('widget left');
    const record = await queryTrans(outcome.gid);
    expect(record.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect((await bankState()).balances.alice).toBe(balance);
  });

  it('TCC: a Try of the bank (HTTP) and one of the stock (gRPC) by name; DTM confirms both', async () => {
    const before = await stockLevel(stockPort);
    const outcome = await order('tcc', { movement: alice(7), item: widgets(1) });
    expect(outcome).toMatchObject({ status: 'succeed' });
    const record = await queryTrans(outcome.gid);
    expect(record.branches.map((b) => `${b.branch_id} ${b.op} ${b.status} ${b.url}`)).toEqual([
      `01 cancel prepared http://127.0.0.1:${bankPort}/bank/hold-cancel`,
      `01 confirm succeed http://127.0.0.1:${bankPort}/bank/hold-confirm`,
      `02 cancel prepared 127.0.0.1:${stockPort}/stock.Stock/ReserveCancel`,
      `02 confirm succeed 127.0.0.1:${stockPort}/stock.Stock/ReserveConfirm`,
    ]);
    const bankNow = await bankState();
    expect(bankNow.calls).toEqual(expect.arrayContaining(['hold-try alice 7', 'hold-confirm alice 7']));
    expect(bankNow.held).toBe(0);
    expect(await stockLevel(stockPort)).toEqual({ available: before.available - 1, reserved: 0, shipped: before.shipped + 1 });
  });

  it('msg: a branch of the bank and one of the stock by name; DTM delivers both', async () => {
    const before = await stockLevel(stockPort);
    const balance = (await bankState()).balances.bob;
    const outcome = await order('msg', { movement: { account: 'bob', amount: 3 }, item: widgets(4) });
    expect(outcome).toMatchObject({ status: 'succeed' });
    const record = await queryTrans(outcome.gid);
    expect(record.branches.map((b) => `${b.branch_id} ${b.op} ${b.status} ${b.url}`)).toEqual([
      `01 action succeed http://127.0.0.1:${bankPort}/bank/credit`,
      `02 action succeed 127.0.0.1:${stockPort}/stock.Stock/Ship`,
    ]);
    expect((await bankState()).balances.bob).toBe(balance + 3);
    expect((await stockLevel(stockPort)).shipped).toBe(before.shipped + 4);
  });

  it('an invalid payload (the contract\'s schema, on the bank) ends the saga failed with the schema\'s message, without a retry', async () => {
    const calls = (await bankState()).calls.length;
    const outcome = await order('saga', { raw: { ref: { service: 'bank', branch: 'withdraw' }, payload: { account: '', amount: -5 } } });
    expect(outcome).toMatchObject({ status: 'failed' });
    const reason = 'invalid payload for BankController.withdraw: account: must be a non-empty string; amount: must be a positive number';
    // DTM records the branch's answer in its own words around the validator's message
    expect(outcome.rollbackReason).toContain(reason);
    const record = await queryTrans(outcome.gid);
    expect(record.transaction?.rollback_reason).toBe(`url:http://127.0.0.1:${bankPort}/bank/withdraw return failed: ${JSON.stringify({ dtm_result: 'FAILURE', message: reason })} FAILURE`);
    expect(record.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['compensate succeed', 'action failed']);
    // the handler never ran for the action; the compensation ran (DTM's rule) and found nothing to undo (at least once: another
    // test file's /resetCronTime on the shared DTM can have its cron compensate again)
    expect([...new Set((await bankState()).calls.slice(calls))]).toEqual(['withdraw-revert  -5']);
  });

  it('a caller using the contract checks an HTTP branch\'s payload against its schema first: saga, TCC and msg refused with every problem, the bank never called', async () => {
    const calls = (await bankState()).calls.length;
    for (const path of ['saga', 'tcc', 'msg'] as const) {
      const outcome = await order(path, { movement: { account: '', amount: -5 }, item: widgets(1) });
      expect(outcome).toMatchObject({ error: 'DtmRemoteBranchError', problem: 'payload' });
      expect(outcome.message).toContain(`does not pass the schema of its contract entry: account: must be a non-empty string; amount: must be a positive number`);
      // a saga or msg was never sent; a TCC was prepared before its body ran, and aborted without a branch (DTM goes from aborting to failed after its abort answered)
      const record = path === 'tcc' ? await waitForTransStatus(outcome.gid, 'failed') : await queryTrans(outcome.gid);
      if (path === 'tcc') expect([record.transaction?.status, record.branches]).toEqual(['failed', []]);
      else expect(record.transaction).toBeNull();
    }
    expect((await bankState()).calls.slice(calls)).toEqual([]);
  });

  it('an invalid payload refused by a Nest pipe (400) is a FAILURE too, with the pipe\'s message', async () => {
    const outcome = await order('saga', { raw: { ref: { service: 'bank', branch: 'deposit' }, payload: { account: 'bob', amount: 2.5 } } });
    expect(outcome).toMatchObject({ status: 'failed' });
    expect(outcome.rollbackReason).toBe('invalid payload for BankController.deposit: amount must be a positive whole number'); // the branch's own message, not DTM's text
    expect((await queryTrans(outcome.gid)).branches.map((b) => `${b.op} ${b.status}`)).toEqual(['compensate succeed', 'action failed']); // no compensation: DTM records it done
    expect((await bankState()).calls.filter((c) => c.startsWith('deposit'))).toEqual([]);
  });

  it('refuses, before anything reaches DTM: an unknown branch (listing the service\'s), a kind mismatch, an unknown service, a gRPC-only branch in an HTTP transaction', async () => {
    const refused = async (body: object) => {
      const outcome = await order('saga', body);
      expect((await queryTrans(outcome.gid)).transaction).toBeNull();
      return outcome;
    };
    expect(await refused({ raw: { ref: { service: 'bank', branch: 'withdrw' }, payload: {} } })).toMatchObject({
      error: 'DtmRemoteBranchError',
      problem: 'unknown-branch',
      message: 'service "bank" has no branch "withdrw"; its branches: credit (msg), deposit (saga), hold (tcc), withdraw (saga). Fix the name (or the contract both services import)',
    });
    expect(await refused({ raw: { ref: { service: 'bank', branch: 'hold' }, payload: {} } })).toMatchObject({ error: 'DtmRemoteBranchError', problem: 'kind' });
    expect(await refused({ raw: { ref: { service: 'shipping', branch: 'ship' }, payload: {} } })).toMatchObject({ error: 'DtmRemoteBranchError', problem: 'unknown-service' });
    const overHttp = await refused({ raw: { ref: { service: 'stock', branch: 'take' }, payload: widgets(1) }, protocol: 'http' });
    expect(overHttp).toMatchObject({ error: 'DtmRemoteBranchError', problem: 'transport' });
    expect(overHttp.message).toContain("start the transaction with { protocol: 'grpc' }");
  });

  it('a gRPC-only participant behind a global guard written as the module advises still serves its manifest: a caller adds its branch by name', async () => {
    const port = await freePort();
    const guarded = await startApp('stock-guarded', 'stock.app.js', { GRPC_PORT: String(port), GUARDED: '1' }, stockReady(port, 'Bearer t'));
    const callerPort = await freePort();
    const caller = await startApp('orders-guarded-stock', 'orders.app.js', ordersEnv({ PORT: String(callerPort), STOCK_GRPC: `127.0.0.1:${port}` }), httpReady(callerPort));
    try {
      await expect(stockLevel(port)).rejects.toThrow(); // the guard refuses any other call without credentials
      const outcome = await order('saga', { movement: alice(1), item: widgets(2) }, callerPort);
      expect(outcome).toMatchObject({ status: 'succeed' });
      expect((await queryTrans(outcome.gid)).transaction?.steps?.[1]).toEqual({ action: `127.0.0.1:${port}/stock.Stock/Take`, compensate: `127.0.0.1:${port}/stock.Stock/TakeRevert` });
      expect((await stockLevel(port, 'Bearer t')).available).toBe(8);
    } finally {
      await Promise.all([caller.stop(), guarded.stop()]);
    }
  }, 60_000);

  it('a typo in a contract\'s branch name fails start-up, naming the service and the branches it has', async () => {
    const port = await freePort();
    const typo = await startApp('orders-typo', 'orders.app.js', ordersEnv({ PORT: String(port), CONTRACT_TYPO: '1' }), undefined);
    const exit = await settledWithin(typo.exited, 20_000);
    await typo.stop();
    expect(exit).not.toBe('0');
    expect(exit).not.toBe('still waiting');
    const log = logTail(typo.logFile, 200);
    expect(log).toContain('DtmRemoteBranchError');
    expect(log).toContain('service "bank" has no branch "withdrw"; its branches: credit (msg), deposit (saga), hold (tcc), withdraw (saga)');
  });

  it('a gRPC-only participant that does not publish its branches fails a caller\'s start-up with its contracts, saying to set publish_branches', async () => {
    const port = await freePort();
    const unpublished = await startApp('stock-unpublished', 'stock.app.js', { GRPC_PORT: String(port), UNPUBLISHED: '1' }, stockReady(port));
    const callerPort = await freePort();
    const caller = await startApp('orders-unpublished-stock', 'orders.app.js', ordersEnv({ PORT: String(callerPort), STOCK_GRPC: `127.0.0.1:${port}` }), undefined);
    try {
      const exit = await settledWithin(caller.exited, 20_000);
      expect(exit).not.toBe('0');
      expect(exit).not.toBe('still waiting');
      const log = logTail(caller.logFile, 200);
      expect(log).toContain('DtmRemoteBranchError');
      expect(log).toContain(`service "stock" does not publish its branches at 127.0.0.1:${port}/nestjs_dtm.Branches/Manifest: set lynx.dtm.publish_branches: true on it`);
      // the participant answered NOT_FOUND (as its GET /dtm/branches would answer 404), without logging an error of its own
      expect(logTail(unpublished.logFile, 200)).not.toContain('ERROR');
    } finally {
      await Promise.all([caller.stop(), unpublished.stop()]);
    }
  });

  it('a participant restarted on another port is found again: the stock at the next use once its manifest is older than refresh, the bank after a call to its old target failed', async () => {
    // the stock (refresh 1 s) moves
    await stock.stop();
    stockPort = await freePort();
    stock = await startApp('stock-moved', 'stock.app.js', { GRPC_PORT: String(stockPort) }, stockReady(stockPort));
    stockFront.to = stockPort;
    await new Promise((done) => setTimeout(done, 1100));
    const saga = await order('saga', { movement: alice(1), item: widgets(1) });
    expect(saga).toMatchObject({ status: 'succeed' });
    expect((await queryTrans(saga.gid)).transaction?.steps?.[1].action).toBe(`127.0.0.1:${stockPort}/stock.Stock/Take`);

    // the bank (refresh 3600 s) moves: its old target refuses the next Try, which marks its manifest stale
    await bank.stop();
    const oldBank = bankPort;
    bankPort = await freePort();
    bank = await startApp('bank-moved', 'bank.app.js', { PORT: String(bankPort) }, httpReady(bankPort));
    bankFront.to = bankPort;
    const failed = await order('tcc', { movement: alice(1), item: widgets(1) });
    expect(failed).toMatchObject({ error: 'DtmUnavailableError' });
    expect(failed.message).toContain(`127.0.0.1:${oldBank}/bank/hold-try`);
    // DTM would retry the cancel at the old address: stop it
    await fetch(`${harness().dtm.serverUrl}/forceStop`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gid: failed.gid }) });
    const tcc = await order('tcc', { movement: alice(1), item: widgets(1) });
    expect(tcc).toMatchObject({ status: 'succeed' });
    expect((await queryTrans(tcc.gid)).branches[0].url).toBe(`http://127.0.0.1:${bankPort}/bank/hold-cancel`);
    // the Try ran once and DTM confirmed (at least once: another test file's /resetCronTime on the shared DTM can have its cron confirm again meanwhile), never cancelled
    const calls = (await bankState()).calls;
    expect(calls.filter((c) => c !== 'hold-confirm alice 1')).toEqual(['hold-try alice 1']);
    expect(calls.slice(0, 2)).toEqual(['hold-try alice 1', 'hold-confirm alice 1']);
  }, 60_000);

  it('keeps working from its kept manifests while a participant\'s manifest cannot be fetched', async () => {
    // the stock's front now leads nowhere: its manifest (refresh 1 s) cannot be refetched; its branches still can be called
    const moved = stockFront.to;
    stockFront.to = await freePort();
    try {
      await new Promise((done) => setTimeout(done, 1100));
      const outcome = await order('saga', { movement: alice(1), item: widgets(1) });
      expect(outcome).toMatchObject({ status: 'succeed' });
      expect((await queryTrans(outcome.gid)).transaction?.steps?.[1].action).toBe(`127.0.0.1:${moved}/stock.Stock/Take`);
    } finally {
      stockFront.to = moved;
    }
  });
});

describe('a participant whose manifest refetch fails, after a call to one of its targets failed', () => {
  it.each([
    ['503 (the service down)', 503],
    ['404 (an ingress with no route to it during a deploy)', 404],
    ['a 200 that is not a manifest (a maintenance page)', { status: 200, body: '<html>back soon</html>' }],
  ] as const)('%s: its kept manifest is used until refresh; the next transactions go on with it and do not each fetch it again (not DtmRemoteBranchError for every transaction)', async (_what, answer) => {
    const participant = await startRecorder();
    const dead = await freePort(); // nothing listens there: the TCC Try is unreachable
    const manifest = {
      format: 'nestjs-dtm.branches/1',
      branches: [
        { name: 'pay', kind: 'saga', ops: { action: { http: participant.urlFor('/pay') }, compensate: { http: participant.urlFor('/pay-back') } } },
        { name: 'hold', kind: 'tcc', ops: { try: { http: `http://127.0.0.1:${dead}/hold-try` }, confirm: { http: participant.urlFor('/hold-confirm') }, cancel: { http: participant.urlFor('/hold-cancel') } } },
      ],
    };
    participant.answer('/dtm/branches', { status: 200, body: manifest });
    const caller = await startDtmApp({ config: { services: { shop: { url: participant.url, refresh: 3600 } } } });
    try {
      // the Try's target is unreachable: the manifest is marked stale
      const gid = await caller.client.generateGid();
      await expect(caller.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 1 }, { service: 'shop', branch: 'hold' }))).rejects.toThrow(`127.0.0.1:${dead}/hold-try`);
      // the refetch fails; three sagas by name go on with the kept manifest
      participant.answer('/dtm/branches', answer);
      const sagas: string[] = [];
      for (let i = 0; i < 3; i++) {
        const saga = await caller.client.generateGid();
        sagas.push(saga);
        const final = await caller.client.newSaga(saga).add({ service: 'shop', branch: 'pay' }, { n: i }).submitAndWait({ timeout: 20 });
        expect(final.status).toBe('succeed');
      }
      // fetched at first use, then once again after the failed Try: not at each of the three sagas
      expect(participant.callsTo('/dtm/branches').map((c) => c.status)).toEqual([200, typeof answer === 'number' ? answer : answer.status]);
      // each saga's action reached the kept manifest's target (at least once: another file's /resetCronTime may make DTM call it again)
      expect([...new Set(participant.callsTo('/pay').map((c) => c.query.gid))].sort()).toEqual([...sagas].sort());
    } finally {
      await caller.close();
      await participant.close();
    }
  });
});

describe('branches by name with branch_auth_keys on the three services', () => {
  const key = randomBytes(33).toString('base64');
  let apps: ManagedProcess[] = [];
  let fronts: Front[] = [];
  let ports: { bank: number; stock: number; orders: number };

  beforeAll(async () => {
    ports = { bank: await freePort(), stock: await freePort(), orders: await freePort() };
    apps = await Promise.all([
      startApp('bank-auth', 'bank.app.js', { PORT: String(ports.bank), BRANCH_AUTH_KEY: key }, httpReady(ports.bank)),
      startApp('stock-auth', 'stock.app.js', { GRPC_PORT: String(ports.stock), BRANCH_AUTH_KEY: key }, stockReady(ports.stock)),
    ]);
    fronts = await Promise.all([startFront(ports.bank), startFront(ports.stock)]);
    apps.push(
      await startApp('orders-auth', 'orders.app.js', { PORT: String(ports.orders), BANK_URL: `http://127.0.0.1:${fronts[0].port}`, STOCK_GRPC: `127.0.0.1:${fronts[1].port}`, BRANCH_AUTH_KEY: key }, httpReady(ports.orders)),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.stop()));
    await Promise.all(fronts.map((f) => f.close()));
  });

  it('saga, TCC and msg by name run on both participants (HTTP and gRPC) with signed calls; an unsigned call to the bank runs nothing', async () => {
    const before = await stockLevel(ports.stock);
    const state = async () => (await fetch(`http://127.0.0.1:${ports.bank}/bank/state`)).json() as Promise<BankState>;
    const saga = await order('saga', { movement: alice(10), item: widgets(2) }, ports.orders);
    expect(saga).toMatchObject({ status: 'succeed' });
    expect((await queryTrans(saga.gid)).transaction?.branch_headers?.['dtm-auth']).toMatch(/^action\.01=/);
    const tcc = await order('tcc', { movement: alice(7), item: widgets(1) }, ports.orders);
    expect(tcc).toMatchObject({ status: 'succeed' });
    const msg = await order('msg', { movement: { account: 'bob', amount: 3 }, item: widgets(4) }, ports.orders);
    expect(msg).toMatchObject({ status: 'succeed' });
    const bank = await state();
    expect(bank.calls).toEqual(expect.arrayContaining(['withdraw alice 10', 'hold-try alice 7', 'hold-confirm alice 7']));
    expect(await stockLevel(ports.stock)).toEqual({ available: before.available - 2 - 1, reserved: 0, shipped: before.shipped + 1 + 4 });

    const forged = await fetch(`http://127.0.0.1:${ports.bank}/bank/withdraw?gid=made-up-1&trans_type=saga&branch_id=01&op=action`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ account: 'alice', amount: 1000 }),
    });
    expect(forged.status).toBe(401);
    expect((await state()).calls).toEqual(bank.calls);
  });
});
