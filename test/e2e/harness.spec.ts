// Proof that the harness is real: sagas submitted with plain HTTP (no library code) to the real DTM
// server drive the recorder app, and the private PostgreSQL and MariaDB do two-phase commit; the
// chaos suite's stall proxy holds and delivers a database's traffic (at once, or once a client sent
// given markers), its gRPC fault proxy closes cleanly under a call it still holds, the restart
// files' kill kit says which cells never got in flight, and each MariaDB server of a run keeps its
// temporary files apart from the others'.
import { once } from 'node:events';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Client, Metadata, Server, credentials, status, type ServiceError } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { fileDatabases, onceDetached, type FileDatabases } from '../support/databases.js';
import { branchStatuses, cronUntilStatus, dtmPost, harness, newGid, queryTrans, triggerCron, waitForTransStatus, type DtmQueryAnswer } from '../support/harness.js';
import { startDtm, type DtmInfo, type RunningDtm } from '../support/services/dtm.js';
import { startMariadb } from '../support/services/mariadb.js';
import { runDirFrom, sleep, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startStallProxy } from '../support/chaos/stall-proxy.js';
import { startGrpcFaultProxy } from '../support/chaos/grpc-fault-proxy.js';
import { bindGrpcServer } from '../support/grpc.js';
import { firstCalls, settledWithin } from '../support/fixtures.js';
import type { BarrierApp } from './barrier-app.js';
import { flag, killKit } from './restart-bank.js';

let recorder: Recorder;
let dbs: FileDatabases;

beforeAll(async () => {
  recorder = await startRecorder();
  dbs = await fileDatabases();
});
afterAll(async () => {
  await recorder?.close();
});
beforeEach(() => recorder.reset());

/** A two-step transfer saga body, as DTM's Go SDK would submit it. */
function transferSaga(gid: string, extra: Record<string, unknown> = {}) {
  return {
    gid,
    trans_type: 'saga',
    steps: [
      { action: recorder.urlFor('/TransOut'), compensate: recorder.urlFor('/TransOutRevert') },
      { action: recorder.urlFor('/TransIn'), compensate: recorder.urlFor('/TransInRevert') },
    ],
    payloads: [JSON.stringify({ amount: 30, step: 1 }), JSON.stringify({ amount: 30, step: 2 })],
    ...extra,
  };
}

describe('the DTM server of the harness', () => {
  it('is the real v1.19.0 server', async () => {
    const res = await fetch(`${harness().dtm.serverUrl}/version`);
    expect(await res.json()).toEqual({ version: 'v1.19.0' });
  });

  it('answers an unknown gid with a null transaction', async () => {
    expect(await queryTrans('no-such-gid-anywhere')).toEqual({ transaction: null, branches: [] });
  });
});

describe('a two-step saga submitted with plain HTTP', () => {
  it('succeeds: both actions called, in order, with DTM query parameters and the payloads verbatim', async () => {
    const gid = await newGid();
    const submit = await dtmPost('/submit', transferSaga(gid));
    expect(submit.status).toBe(200);

    const final = await waitForTransStatus(gid, 'succeed');
    expect(final.branches.map((b) => b.status)).toEqual(['prepared', 'succeed', 'prepared', 'succeed']);
    expect(final.branches.map((b) => `${b.branch_id}/${b.op}`)).toEqual(['01/compensate', '01/action', '02/compensate', '02/action']);

    // each call's first, in the order they came: another test file's /resetCronTime on this shared DTM can have its cron call a
    // branch again (test/support/README.md)
    const calls = firstCalls(recorder.callsFor(gid), (c) => c.path);
    expect(calls.map((c) => c.path)).toEqual(['/TransOut', '/TransIn']);
    expect(calls[0]).toMatchObject({
      method: 'POST',
      query: { gid, trans_type: 'saga', branch_id: '01', op: 'action' },
      body: '{"amount":30,"step":1}',
    });
    expect(calls[1]).toMatchObject({ query: { gid, trans_type: 'saga', branch_id: '02', op: 'action' }, body: '{"amount":30,"step":2}' });
    expect(calls[0].headers['content-type']).toBe('application/json');
  });

  it('rolls back when step 2 answers 409: compensations of step 2 then step 1, reason recorded', async () => {
    const gid = await newGid();
    recorder.answer('/TransIn', { status: 409, body: { dtm_result: 'FAILURE', message: 'insufficient funds at bank 2' } });
    expect((await dtmPost('/submit', transferSaga(gid))).status).toBe(200);

    const final = await waitForTransStatus(gid, 'failed');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
    expect(firstCalls(recorder.callsFor(gid), (c) => `${c.path} ${c.query.op}`).map((c) => `${c.path} ${c.query.op}`)).toEqual([
      '/TransOut action',
      '/TransIn action',
      '/TransInRevert compensate',
      '/TransOutRevert compensate',
    ]);
    // compensations get the step's own payload
    expect(recorder.callsTo('/TransOutRevert', gid)[0].body).toBe('{"amount":30,"step":1}');
    expect(final.transaction?.rollback_reason).toContain('insufficient funds at bank 2');
  });

  it('retries a branch that answers 201: only 200 is success', async () => {
    const gid = await newGid();
    recorder.answer('/TransOut', 201, 201, 200);
    expect((await dtmPost('/submit', transferSaga(gid))).status).toBe(200);

    const firstCall = (await recorder.waitForCalls('/TransOut', 1, { gid }))[0];
    expect(firstCall.status).toBe(201);
    const afterFirst = await queryTrans(gid);
    expect(afterFirst.transaction?.status).toBe('submitted');
    expect(afterFirst.branches.map((b) => b.status)).toEqual(['prepared', 'prepared', 'prepared', 'prepared']);
    // DTM retries with backoff (20 s, 40 s, ...); have its cron take the transaction now
    await triggerCron();
    await recorder.waitForCalls('/TransOut', 2, { gid });
    await triggerCron();

    const final = await waitForTransStatus(gid, 'succeed', 30_000);
    expect(final.branches.map((b) => b.status)).toEqual(['prepared', 'succeed', 'prepared', 'succeed']);
    // answered in order 201, 201, 200: called until it answered 200 (a call more, after it, can be another test file's
    // /resetCronTime on this shared DTM having its cron take the transaction again meanwhile: answered 200 too)
    const transOut = recorder.callsTo('/TransOut', gid);
    expect(transOut.map((c) => c.status)).toEqual([201, 201, 200, ...transOut.slice(3).map(() => 200)]);
    // step 2 only ran after step 1 finally answered 200
    const transIn = recorder.callsTo('/TransIn', gid);
    expect(transIn.length).toBeGreaterThanOrEqual(1);
    expect(transIn[0].at).toBeGreaterThanOrEqual(transOut[2].at);
  });
});

describe('retrying a transaction now', () => {
  // DTM v1.19.0 behaviour the harness (and later the library) depends on: on the boltdb and Redis
  // stores, /resetNextCronTime rewrites the transaction's next_cron_time but not the cron's index,
  // so the cron does not take the transaction any earlier; /resetCronTime moves the index entries.
  // On a DTM server of its own: other test files call /resetCronTime on the shared one.
  let own: { info: DtmInfo; process: ManagedProcess };
  beforeAll(async () => {
    own = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-resetcron' });
  });
  afterAll(async () => {
    await own?.process.stop();
  });

  it('/resetNextCronTime does not make the cron retry earlier, /resetCronTime does', async () => {
    const server = own.info.serverUrl;
    const post = (path: string, body: unknown) =>
      fetch(`${server}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const gid = ((await (await fetch(`${server}/newGid`)).json()) as { gid: string }).gid;
    recorder.answer('/TransOut', 500, 200);
    expect((await post('/submit', transferSaga(gid))).status).toBe(200);
    await recorder.waitForCalls('/TransOut', 1, { gid });

    expect((await post('/resetNextCronTime', { gid })).status).toBe(200);
    const stored = ((await (await fetch(`${server}/query?gid=${gid}`)).json()) as DtmQueryAnswer).transaction!;
    expect(Date.parse(stored.next_cron_time!)).toBeLessThanOrEqual(Date.now());
    await new Promise((r) => setTimeout(r, 2500)); // the cron polls every second
    expect(recorder.callsTo('/TransOut', gid)).toHaveLength(1);

    expect((await fetch(`${server}/resetCronTime?timeout=0`)).status).toBe(200);
    await recorder.waitForCalls('/TransOut', 2, { gid, timeoutMs: 5000 });
  });

  it("the harness's waits for a status fail at their deadline saying what DTM held last: a message left prepared, a gid DTM does not know", async () => {
    const server = own.info.serverUrl;
    const gid = await newGid(server);
    const msg = { gid, trans_type: 'msg', steps: [{ action: recorder.urlFor('/TransIn') }], payloads: ['{}'], query_prepared: recorder.urlFor('/QueryPrepared'), timeout_to_fail: 60 };
    expect((await dtmPost('/prepare', msg, server)).status).toBe(200);
    const prepared = await waitForTransStatus(gid, 'succeed', 800, server).catch((e: unknown) => e);
    expect((prepared as Error).message).toBe(`transaction ${gid} reaching succeed: not ready after 800 ms; DTM held last: status "prepared", branches [01/action=prepared]`);
    const unknown = await cronUntilStatus('no-such-gid-anywhere', ['succeed', 'failed'], { timeoutMs: 800, serverUrl: server }).catch((e: unknown) => e);
    expect((unknown as Error).message).toBe("transaction no-such-gid-anywhere reaching succeed or failed (DTM's cron made to take it): not ready after 800 ms; DTM held last: no such transaction");
  });
});

describe("the harness's MariaDB servers", () => {
  it("keep their temporary files in a directory of their own: a server's start, which deletes every '#sql*' file in its tmpdir, leaves the shared server's alone", async () => {
    const conn = await mysql.createConnection(dbs.mariadb.config);
    let other: Awaited<ReturnType<typeof startMariadb>> | undefined;
    try {
      const [rows] = await conn.query('SELECT @@tmpdir AS dir');
      const dir = String((rows as { dir: string }[])[0].dir);
      expect(dir.startsWith(harness().runDir)).toBe(true); // not /tmp, which every server of the run would share
      const marker = join(dir, `#sql-marker-${process.pid}.MAI`);
      writeFileSync(marker, '');
      other = await startMariadb(runDirFrom(harness().runDir), { name: 'mariadb-harness-tmpdir' });
      expect(existsSync(marker)).toBe(true);
      rmSync(marker);
    } finally {
      await other?.process.stop();
      await conn.end();
    }
  });
});

describe('two-phase commit in the private databases', () => {
  it('PostgreSQL: PREPARE TRANSACTION keeps the work invisible until COMMIT PREPARED', async () => {
    const a = new pg.Client({ connectionString: dbs.postgres.url });
    const b = new pg.Client({ connectionString: dbs.postgres.url });
    await a.connect();
    await b.connect();
    try {
      expect(Number((await a.query('SHOW max_prepared_transactions')).rows[0].max_prepared_transactions)).toBeGreaterThan(0);
      await a.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
      await a.query('INSERT INTO account VALUES (1, 100)');

      const xid = `${dbs.name}-pg-01`;
      await a.query('BEGIN');
      await a.query('UPDATE account SET balance = balance - 30 WHERE id = 1');
      await a.query(`PREPARE TRANSACTION '${xid}'`);
      await a.end(); // a prepared transaction survives its session

      const prepared = await b.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()');
      expect(prepared.rows.map((r) => r.gid)).toEqual([xid]);
      expect((await b.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance).toBe(100);

      await b.query(`COMMIT PREPARED '${xid}'`);
      expect((await b.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance).toBe(70);
      expect((await b.query('SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE database = current_database()')).rows[0].n).toBe(0);
    } finally {
      await b.end();
      await a.end().catch(() => undefined);
    }
  });

  it('MariaDB: XA START/END/PREPARE keeps the work invisible until XA COMMIT from another connection', async () => {
    const a = await mysql.createConnection(dbs.mariadb.config);
    const b = await mysql.createConnection(dbs.mariadb.config);
    try {
      await a.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL) ENGINE=InnoDB');
      await a.query('INSERT INTO account VALUES (1, 100)');

      const xid = `${dbs.name}-my-01`;
      await a.query(`XA START '${xid}'`);
      await a.query('UPDATE account SET balance = balance - 30 WHERE id = 1');
      await a.query(`XA END '${xid}'`);
      await a.query(`XA PREPARE '${xid}'`);
      const session = a.threadId;
      await a.end(); // a prepared XA branch survives its connection

      const [recovered] = await b.query<mysql.RowDataPacket[]>('XA RECOVER');
      expect(recovered.map((r) => String(r.data))).toContain(xid);
      const [before] = await b.query<mysql.RowDataPacket[]>('SELECT balance FROM account WHERE id = 1');
      expect(before[0].balance).toBe(100);

      await onceDetached(dbs.mariadb.config, session, () => b.query(`XA COMMIT '${xid}'`)); // not before the server has detached it from `a`
      const [after] = await b.query<mysql.RowDataPacket[]>('SELECT balance FROM account WHERE id = 1');
      expect(after[0].balance).toBe(70);
      const [left] = await b.query<mysql.RowDataPacket[]>('XA RECOVER');
      expect(left.map((r) => String(r.data))).not.toContain(xid);
    } finally {
      await b.end();
      await a.end().catch(() => undefined);
    }
  });

  it('gives each test file its own databases', async () => {
    const c = new pg.Client({ connectionString: dbs.postgres.url });
    await c.connect();
    try {
      expect((await c.query('SELECT current_database() AS db')).rows[0].db).toBe(dbs.name);
    } finally {
      await c.end();
    }
    expect(dbs.name).toMatch(/^t_harness_[0-9a-f]{6}$/);
    expect(await branchStatuses('no-such-gid-anywhere')).toEqual([]);
  });
});

describe("the chaos suite's stall proxy", () => {
  it('holds every byte to and from PostgreSQL while stalled, then delivers them in order; a connection opened meanwhile (MariaDB speaks first) waits too', async () => {
    const pgProxy = await startStallProxy(dbs.postgres.url);
    const myProxy = await startStallProxy(dbs.mariadb.url);
    const c = new pg.Client({ connectionString: pgProxy.url });
    let my: mysql.Connection | undefined;
    try {
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      pgProxy.stall();
      myProxy.stall();
      const first = c.query('SELECT 2 AS n');
      const second = c.query('SELECT 3 AS n');
      const connecting = mysql.createConnection(myProxy.url);
      expect(await settledWithin(first, 700)).toBe('still waiting');
      expect(await settledWithin(connecting, 10)).toBe('still waiting');
      expect([pgProxy.heldBytes > 0, pgProxy.heldConnections]).toEqual([true, 1]);
      expect([myProxy.heldBytes, myProxy.heldConnections]).toEqual([0, 1]);
      pgProxy.resume();
      myProxy.resume();
      expect([(await first).rows[0].n, (await second).rows[0].n]).toEqual([2, 3]);
      my = await connecting;
      const [rows] = await my.query('SELECT 4 AS n');
      expect((rows as { n: number }[])[0].n).toBe(4);
    } finally {
      await c.end().catch(() => undefined);
      await my?.end().catch(() => undefined);
      await pgProxy.close();
      await myProxy.close();
    }
  });
});

describe("the chaos suite's stall proxy armed with stallWhenSent", () => {
  /** A socket to `port` with everything it received so far as text, and a promise of its close. */
  const socketTo = async (port: number) => {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    // (not once(): it rejects on the 'error' a cut connection emits first)
    const got = { text: '', closed: new Promise<string>((resolve) => socket.on('close', () => resolve('closed'))) };
    socket.on('data', (chunk: Buffer) => (got.text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    return { socket, got };
  };
  /** Resolves once what `got` received ends with `text`; rejects after `ms`. */
  const received = (got: { text: string }, text: string, ms = 2000) => waitUntil(`'${text}' echoed`, async () => got.text.endsWith(text), { timeoutMs: ms, intervalMs: 10 });

  it('passes bytes until a client sent every marker (one split across two writes), then holds them; with cutOthers the other connections are cut; resume() delivers them in order and disarms it', async () => {
    const echo = net.createServer((s) => s.on('error', () => undefined).pipe(s)); // (a cut resets it)
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const proxy = await startStallProxy(`tcp://127.0.0.1:${(echo.address() as net.AddressInfo).port}`);
    const port = Number(new URL(proxy.url).port);
    try {
      const a = await socketTo(port);
      const other = await socketTo(port);
      proxy.stallWhenSent(['STALL-HERE', 'gid-7'], { cutOthers: true });
      a.socket.write('gid-7 alone;');
      await received(a.got, 'gid-7 alone;');
      a.socket.write('then STALL-');
      await received(a.got, 'then STALL-');
      expect(proxy.stalled).toBe(false);
      a.socket.write('HERE;');
      expect(await settledWithin(other.got.closed, 2000)).toBe('closed');
      expect(await settledWithin(received(a.got, 'HERE;', 300), 500)).toBeInstanceOf(Error);
      expect([proxy.stalled, proxy.heldBytes, proxy.heldConnections]).toEqual([true, 5, 1]);
      const late = await socketTo(port);
      late.socket.write('late;');
      expect(await settledWithin(received(late.got, 'late;', 300), 500)).toBeInstanceOf(Error);
      expect(proxy.heldConnections).toBe(2);
      proxy.resume();
      await received(a.got, 'HERE;');
      await received(late.got, 'late;');
      expect(a.got.text).toBe('gid-7 alone;then STALL-HERE;');
      // disarmed: the markers again pass
      a.socket.write('STALL-HERE gid-7;');
      await received(a.got, 'STALL-HERE gid-7;');
      expect(proxy.stalled).toBe(false);
      a.socket.destroy();
      late.socket.destroy();
    } finally {
      await proxy.close();
      await new Promise((resolve) => echo.close(resolve));
    }
  });
});

describe("the restart files' killKit", () => {
  /** A kit whose DTM log is `log`, its gids numbered (no DTM, no app: only its cells are used). */
  const kitLogging = (log: string) => {
    let n = 0;
    return killKit(() => ({ info: { logFile: log } }) as RunningDtm, () => recorder, () => ({ client: { generateGid: async () => `killkit-${++n}` } }) as unknown as BarrierApp);
  };

  it('untilInFlight() fails after its time naming the cells not in flight, with the end of DTM\'s log; a cell whose inFlight fails fails it with that error', async () => {
    const log = join(runDirFrom(harness().runDir).path, 'killkit-dtm.log');
    writeFileSync(log, 'an earlier line\nthe last line of the log\n');
    const kit = kitLogging(log);
    await kit.add('reached', 'http', () => ({ inFlight: Promise.resolve(), outcome: Promise.resolve() }));
    await kit.add('never', 'grpc', () => ({ inFlight: new Promise(() => undefined), outcome: Promise.resolve() }));
    await expect(kit.untilInFlight(200)).rejects.toThrow(/^not in flight after 0\.2 s: never grpc\n[\s\S]*the last line of the log/);
    const broken = kitLogging(log);
    await broken.add('broken', 'http', () => ({ inFlight: sleep(10).then(() => Promise.reject(new Error('its gate was never reached'))), outcome: Promise.resolve() }));
    await expect(broken.untilInFlight(5000)).rejects.toThrow('its gate was never reached');
  });
});

describe("the chaos suite's gRPC fault proxy", () => {
  it('closed while a delayed call waits (the end of a run): that call ends, and the proxy answers it without throwing', async () => {
    const path = '/chaos.Test/Echo';
    const same = (b: Buffer) => b;
    const method = { path, requestStream: false, responseStream: false, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same };
    const bank = new Server();
    bank.addService({ [path]: method }, { [path]: (call: { request: Buffer }, callback: (err: null, reply: Buffer) => void) => callback(null, call.request) });
    const bankPort = await bindGrpcServer(bank);
    const answered: boolean[] = [];
    const arrived = flag();
    // every call delayed past a branch timeout of 0.2 s: forwarded 0.7 s after it came
    const proxy = await startGrpcFaultProxy(`127.0.0.1:${bankPort}`, [path], 0.2, () => 'delay', () => undefined, {
      hold: () => void arrived.set(), // (told of each call before its fault; takes none)
      answered: (_keys, ok) => void answered.push(ok),
    });
    const client = new Client(proxy.address, credentials.createInsecure());
    try {
      const ended = new Promise<ServiceError | null>((resolve) => {
        client.makeUnaryRequest(path, same, same, Buffer.from('x'), new Metadata(), { deadline: Date.now() + 10_000 }, (err: ServiceError | null) => resolve(err));
      });
      await arrived.reached; // the call waits in the proxy's delay
      await proxy.close();
      expect([status.UNAVAILABLE, status.CANCELLED]).toContain((await ended)?.code);
      // past the delay the proxy forwards the call on its closed channel: answered UNAVAILABLE (it threw, unhandled)
      await waitUntil('the delayed call answered', async () => answered.length > 0, { timeoutMs: 5000, intervalMs: 20 });
      expect(answered).toEqual([false]);
    } finally {
      client.close();
      bank.forceShutdown();
    }
  });
});
