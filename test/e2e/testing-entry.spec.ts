// nestjs-dtm/testing against real servers: startDtmServer (its own DTM v1.19 server), the typed
// error without a binary, callBranch / callGrpcBranch exactly as DTM calls (what the recorder
// received), and waitForTransaction / queryTransaction on a saga the harness's DTM ran.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DtmClient, DtmConfigError, DtmModule, DtmServerError, DtmUnavailableError, DtmUsageError, resolveDtmConfig } from 'nestjs-dtm';
import {
  DTM_DOCKER_RUN,
  DtmServerNotFoundError,
  callBranch,
  callGrpcBranch,
  freeLocalPort,
  findDtmServerBinary,
  queryTransaction,
  startDtmServer,
  waitForDtmServer,
  waitForTransaction,
} from 'nestjs-dtm/testing';
import { connectionsTo, settledWithin } from '../support/fixtures.js';
import { TESTS_GRPC_PROTOS } from '../support/grpc.js';
import { harness, newGid } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { dtmBinaryPath } from '../support/services/binaries.js';
import { startTrap } from '../support/trap.js';

void DtmModule;
let recorder: Recorder;
beforeAll(async () => {
  recorder = await startRecorder();
});
afterAll(() => recorder?.close());

describe('startDtmServer', () => {
  it('starts a DTM v1.19.0 server on free ports that runs a saga, and stop() ends it', async () => {
    const dtm = await startDtmServer({ binary: dtmBinaryPath() });
    try {
      expect(dtm.version).toBe('v1.19.0');
      expect(dtm.serverUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/dtmsvr$/);
      expect(dtm.grpcAddress).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(dtm.serverUrl).not.toBe(harness().dtm.serverUrl);
      const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: dtm.serverUrl } }, {}));
      const gid = await newGid();
      const final = await client.newSaga(gid).add(recorder.urlFor('/A'), recorder.urlFor('/Ac'), { n: 1 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(recorder.callsTo('/A', gid).map((c) => c.query.op)).toEqual(['action']);
    } finally {
      await dtm.stop();
    }
    await expect(fetch(`${dtm.httpUrl}/api/ping`)).rejects.toThrow();
  });

  it('finds the binary through DTM_BINARY, then PATH, then the cache; none there and build: false is a DtmServerNotFoundError listing every way, the docker run line included', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'nestjs-dtm-nobinary-'));
    try {
      expect(findDtmServerBinary({ DTM_BINARY: dtmBinaryPath() })).toEqual({ path: dtmBinaryPath(), from: 'DTM_BINARY' });
      expect(findDtmServerBinary({ PATH: join(dtmBinaryPath(), '..'), XDG_CACHE_HOME: empty })).toEqual({ path: dtmBinaryPath(), from: 'PATH' });
      expect(findDtmServerBinary({ PATH: empty, XDG_CACHE_HOME: empty })).toBeUndefined();
      expect(() => findDtmServerBinary({ DTM_BINARY: join(empty, 'dtm') })).toThrow(DtmServerNotFoundError);
      const saved = { PATH: process.env.PATH, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME, DTM_BINARY: process.env.DTM_BINARY };
      Object.assign(process.env, { PATH: empty, XDG_CACHE_HOME: empty });
      delete process.env.DTM_BINARY;
      const error = await startDtmServer({ build: false }).catch((e: unknown) => e);
      Object.assign(process.env, saved);
      if (saved.DTM_BINARY === undefined) delete process.env.DTM_BINARY;
      expect(error).toBeInstanceOf(DtmServerNotFoundError);
      expect(error).toBeInstanceOf(DtmUsageError);
      const message = (error as Error).message;
      const cached = join(empty, 'nestjs-dtm', 'dtm-v1.19.0', 'dtm');
      for (const way of ['set DTM_BINARY', 'on PATH as "dtm"', `with Go 1.24 or newer, build it once into ${cached} (a few minutes): node -e "require('nestjs-dtm/testing').buildDtmServer()", or drop build: false`, DTM_DOCKER_RUN]) {
        expect(message).toContain(way);
      }
      // build: false never builds: the first start would not either
      expect(message).not.toContain('the first start builds it into');
      expect(new DtmServerNotFoundError([cached], 'Go is not installed either, so it cannot be built').message).toContain('install Go 1.24 or newer: the first start builds it into ');
      // published on the host's loopback only: DTM authenticates nothing and calls any URL it is given
      expect(DTM_DOCKER_RUN).toBe('docker run --rm -p 127.0.0.1:36789:36789 -p 127.0.0.1:36790:36790 yedf/dtm:1.19.0');
      expect(message).toContain('server_url http://127.0.0.1:36789/api/dtmsvr');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('options it does not have, or of the wrong kind, are a DtmUsageError listing each, before anything starts', async () => {
    const untyped = (options: unknown) => options as Parameters<typeof startDtmServer>[0];
    const error = await startDtmServer(untyped({ binary: dtmBinaryPath(), port: 36789, cronInterval: 1, build: 'no', startTimeoutMs: -1 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe(
      'startDtmServer(options): unknown option "port" (options: binary, build, cronIntervalSeconds, extraConfig, startTimeoutMs); unknown option "cronInterval" (options: binary, build, cronIntervalSeconds, extraConfig, startTimeoutMs); build must be true or false, got "no"; startTimeoutMs must be milliseconds from 1 to 600000, got -1',
    );
    await expect(startDtmServer(untyped({ cronIntervalSeconds: 0.5 }))).rejects.toThrow('cronIntervalSeconds must be whole seconds from 1 to 3600, got 0.5');
    await expect(startDtmServer(untyped('dtm'))).rejects.toThrow('startDtmServer(options): options must be an object, got string');
  });

  it('waitForDtmServer gives up after timeoutMs on a port that accepts connections but never answers (each request is bounded too), with its usual error', async () => {
    const trap = await startTrap({ hold: true });
    try {
      const httpUrl = `http://${trap.address}`;
      const started = Date.now();
      const error = await settledWithin(waitForDtmServer(httpUrl, 500, () => undefined), 5000);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toMatch(new RegExp(`^the DTM server at ${httpUrl.replace(/\./g, '\\.')} did not answer within 500 ms \\(.*timeout`));
      expect(elapsed).toBeLessThan(3000); // the 500 ms bound, not settledWithin's 5 s: slack for a loaded CI machine
      expect(trap.connections).toBeGreaterThan(0); // it did connect: the request's own deadline ended it
    } finally {
      await trap.close();
    }
    // one that answers /api/ping but never /api/dtmsvr/version: the same deadline
    const server = createServer((req, res) => (req.url === '/api/ping' ? res.end('{}') : undefined));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const httpUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const started = Date.now();
      const error = await settledWithin(waitForDtmServer(httpUrl, 500, () => undefined), 5000);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toMatch(/answered \/api\/ping, but \/api\/dtmsvr\/version gave no version within 500 ms in all \(.*timeout/);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    }
  });
});

describe('calling a branch as DTM does', () => {
  it('HTTP: gid, trans_type, branch_id and op in the query, the payload as JSON; the answer read as DTM reads it', async () => {
    recorder.answer('/direct', 409);
    const answer = await callBranch(recorder.urlFor('/direct'), { gid: 'g-direct', op: 'compensate', transType: 'saga', branchId: '02', body: { amount: 3 }, headers: { 'x-request-id': 'r1' } });
    expect([answer.status, answer.outcome]).toEqual([409, 'FAILURE']);
    const [call] = recorder.callsTo('/direct', 'g-direct');
    expect([call.method, call.query, JSON.parse(call.body), call.headers['x-request-id'], call.headers['content-type']]).toEqual([
      'POST',
      { gid: 'g-direct', trans_type: 'saga', branch_id: '02', op: 'compensate' },
      { amount: 3 },
      'r1',
      'application/json',
    ]);
    recorder.answer('/direct-ongoing', 425);
    expect((await callBranch(recorder.urlFor('/direct-ongoing'), { gid: 'g-d2', op: 'action', body: {} })).outcome).toBe('ONGOING');
    expect((await callBranch(recorder.urlFor('/direct-ok'), { gid: 'g-d3', op: 'action', body: {} })).outcome).toBe('SUCCESS');
    recorder.answer('/direct-500', 500);
    expect((await callBranch(recorder.urlFor('/direct-500'), { gid: 'g-d4', op: 'action', body: {} })).outcome).toBe('ERROR');
    // DTM's order (HTTPResp2DtmError): ONGOING, then FAILURE, by status or body text; then any status but 200 is an error
    const read = async (path: string, status: number, body: unknown) => {
      recorder.answer(path, { status, body });
      return (await callBranch(recorder.urlFor(path), { gid: 'g-d6', op: 'action', body: {} })).outcome;
    };
    expect(await read('/direct-201', 201, { ok: true })).toBe('ERROR'); // an undecorated @Post() route: DTM retries it forever
    expect(await read('/direct-204', 204, '')).toBe('ERROR');
    expect(await read('/direct-500-failure', 500, { dtm_result: 'FAILURE' })).toBe('FAILURE');
    expect(await read('/direct-409-ongoing', 409, { dtm_result: 'ONGOING' })).toBe('ONGOING');
    expect(await read('/direct-200-failure', 200, { dtm_result: 'FAILURE' })).toBe('FAILURE');
    // no payload: a GET, as DTM's msg back-check
    await callBranch(recorder.urlFor('/direct-get'), { gid: 'g-d5', op: 'msg', transType: 'msg' });
    expect(recorder.callsTo('/direct-get', 'g-d5').map((c) => [c.method, c.body])).toEqual([['GET', '']]);
  });

  it('gRPC: dtm-gid, dtm-trans_type, dtm-branch_id, dtm-op metadata and the message bytes; ABORTED is FAILURE', async () => {
    recorder.answer('/GrpcDirect', 409);
    const answer = await callGrpcBranch(recorder.grpcTargetFor('/GrpcDirect'), { gid: 'g-grpc', op: 'try', transType: 'tcc', branchId: '01', body: Buffer.from([8, 7]), headers: { 'x-request-id': 'r2', 'x-ctx-bin': 'abc' } });
    expect([answer.status, answer.outcome, answer.grpcCode]).toEqual([409, 'FAILURE', 10]);
    const [call] = recorder.callsTo('/GrpcDirect', 'g-grpc');
    expect([call.method, call.query, Buffer.from(call.body, 'latin1'), call.headers['x-request-id'], call.headers['x-ctx-bin']]).toEqual([
      'GRPC',
      { gid: 'g-grpc', trans_type: 'tcc', branch_id: '01', op: 'try' },
      Buffer.from([8, 7]),
      'r2',
      'abc', // a -bin header as binary metadata (the recorder reads its bytes as UTF-8)
    ]);
    expect((await callGrpcBranch(recorder.grpcTargetFor('/GrpcOk'), { gid: 'g-grpc2', op: 'confirm', transType: 'tcc' })).outcome).toBe('SUCCESS');
    recorder.answer('/GrpcOldOngoing', { status: 409, body: { message: 'ONGOING' } }); // ABORTED "ONGOING": DTM's old ONGOING
    expect(await callGrpcBranch(recorder.grpcTargetFor('/GrpcOldOngoing'), { gid: 'g-grpc4', op: 'action' })).toMatchObject({ status: 425, outcome: 'ONGOING', grpcCode: 10 });
    recorder.answer('/GrpcOngoing', 425);
    expect(await callGrpcBranch(recorder.grpcTargetFor('/GrpcOngoing'), { gid: 'g-grpc5', op: 'action' })).toMatchObject({ status: 425, outcome: 'ONGOING', grpcCode: 9 });
    // an object needs the protos that declare the method
    await expect(callGrpcBranch(recorder.grpcTargetFor('/GrpcOk'), { gid: 'g-grpc3', op: 'action', body: { a: 1 } }, TESTS_GRPC_PROTOS)).rejects.toThrow(/pass the protos that declare it/);
    await expect(callBranch(recorder.urlFor('/x'), { gid: '', op: 'action' })).rejects.toThrow(DtmUsageError);
  });

  it('gRPC: an OK reply that does not decode with the protos given rejects with DtmServerError (no uncaught exception, no hang)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'testing-entry-'));
    const protoPath = join(dir, 'recorder.proto');
    writeFileSync(protoPath, 'syntax = "proto3";\npackage recorder;\nservice Recorder { rpc GrpcUndecodable (Req) returns (Reply); }\nmessage Req { string n = 1; }\nmessage Reply { string result = 1; }\n');
    const uncaught: unknown[] = [];
    const record = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', record);
    try {
      recorder.answer('/GrpcUndecodable', { status: 200, body: { result: 'recorded' } }); // its JSON text: not a recorder.Reply
      const call = callGrpcBranch(recorder.grpcTargetFor('/GrpcUndecodable'), { gid: 'g-grpc6', op: 'action', body: { n: 'x' } }, { protoPath });
      const settled = await settledWithin(call, 10_000, 'resolved');
      expect(settled).toBeInstanceOf(DtmServerError);
      expect((settled as Error).message).toMatch(/answered OK with a reply \(\d+ bytes\) that does not decode as the method's reply type/);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', record);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bad arguments and an unreachable branch are typed errors that say what to do, not a TypeError', async () => {
    const call = { gid: 'g-bad', op: 'action', body: {} };
    await expect(callBranch('not a url', call)).rejects.toThrow("callBranch(url, call): url must be the branch's http(s) URL");
    await expect(callBranch('ftp://127.0.0.1/x', call)).rejects.toThrow(DtmUsageError);
    await expect(callBranch(recorder.urlFor('/x'), undefined as never)).rejects.toThrow('callBranch needs { gid, op }');
    await expect(callBranch(recorder.urlFor('/x'), { ...call, body: 1n })).rejects.toThrow(/the payload cannot be JSON-encoded/);
    const closed = `http://127.0.0.1:${await freeLocalPort()}/bank/withdraw`;
    const unreachable = await callBranch(closed, call).catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(DtmUnavailableError);
    expect((unreachable as Error).message).toMatch(/^callBranch: could not reach the branch http:\/\/127\.0\.0\.1:\d+\/bank\/withdraw \(ECONNREFUSED\); check that the app listens there$/);
    expect(recorder.callsTo('/x', 'g-bad')).toEqual([]);
  });

  it('a gRPC branch nothing listens for is a DtmUnavailableError too, not an answer (ERROR) a test would take for the handler\'s crash', async () => {
    const closed = `127.0.0.1:${await freeLocalPort()}/recorder.Recorder/Grpc`;
    const unreachable = await callGrpcBranch(closed, { gid: 'g-bad-grpc', op: 'action' }).catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(DtmUnavailableError);
    expect((unreachable as Error).message).toMatch(/^callGrpcBranch: could not reach the branch 127\.0\.0\.1:\d+\/recorder\.Recorder\/Grpc \(.*ECONNREFUSED.*\); check that the app's gRPC server listens there$/);
  });

  it("a gRPC branch target at an HTTP/1 port (the app's HTTP port where its gRPC port belongs): the DtmUnavailableError says something there does not speak gRPC, not only grpc-js's Protocol error", async () => {
    const httpAddress = new URL(recorder.url).host;
    const error = await callGrpcBranch(`${httpAddress}/recorder.Recorder/Grpc`, { gid: 'g-grpc-on-http', op: 'action' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toMatch(
      new RegExp(`^callGrpcBranch: could not reach the branch 127\\.0\\.0\\.1:\\d+/recorder\\.Recorder/Grpc \\(.*Protocol error.*\\); something listens at ${httpAddress.replace(/\./g, '\\.')} but does not speak gRPC \\(HTTP/2\\)`),
    );
    expect((error as Error).message).toContain('lynx.dtm.grpc_app_address');
    expect(recorder.callsFor('g-grpc-on-http')).toEqual([]);
  });
});

describe('waiting for a transaction', () => {
  it('waitForTransaction returns the final status, rollback reason and branches; queryTransaction what DTM holds now', async () => {
    const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: harness().dtm.serverUrl } }, {}));
    const gid = await newGid();
    recorder.answer('/W2', 409);
    await client.newSaga(gid).add(recorder.urlFor('/W1'), recorder.urlFor('/W1c'), {}).add(recorder.urlFor('/W2'), recorder.urlFor('/W2c'), {}).submit();
    const final = await waitForTransaction(harness().dtm.serverUrl, gid, { timeout: 30 });
    expect(final.status).toBe('failed');
    expect(final.branches.map((b) => `${b.branchId}:${b.op}:${b.status}`)).toEqual(['01:compensate:succeed', '01:action:succeed', '02:compensate:succeed', '02:action:failed']);
    expect((await queryTransaction(harness().dtm.serverUrl, gid))?.status).toBe('failed');
    expect(await queryTransaction(harness().dtm.serverUrl, `${gid}-unknown`)).toBeNull();
  });

  it("given the server's httpUrl instead of its serverUrl, waitForTransaction / queryTransaction throw a DtmUsageError naming the call and the URL to use, not an app configuration's DtmConfigError", async () => {
    const httpUrl = harness().dtm.serverUrl.replace(/\/api\/dtmsvr$/, '');
    for (const [fn, call] of [
      ['waitForTransaction', () => waitForTransaction(httpUrl, 'any-gid', { timeout: 1 })],
      ['queryTransaction', () => queryTransaction(httpUrl, 'any-gid')],
    ] as const) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect(error).not.toBeInstanceOf(DtmConfigError);
      expect((error as Error).message).toBe(
        `${fn}(serverUrl, gid): serverUrl must end with /api/dtmsvr, the path of DTM's HTTP API (DTM answers 404 to anything else); got "${httpUrl}": use "${httpUrl}/api/dtmsvr" (startDtmServer() gives it as serverUrl, not httpUrl)`,
      );
    }
  });

  it('waitForTransaction / queryTransaction leave no connection to DTM open: 300 calls, no more connections (DTM never closes an idle one)', async () => {
    const serverUrl = harness().dtm.serverUrl;
    const gid = await newGid();
    await new DtmClient(resolveDtmConfig({ config: { serverUrl } }, {})).newSaga(gid).add(recorder.urlFor('/L1'), recorder.urlFor('/L1c'), {}).submit();
    expect((await waitForTransaction(serverUrl, gid, { timeout: 30 })).status).toBe('succeed');
    const dtmPort = Number(new URL(serverUrl).port);
    const before = connectionsTo(dtmPort);
    for (let i = 0; i < 150; i++) {
      expect((await queryTransaction(serverUrl, gid))?.status).toBe('succeed');
      expect((await waitForTransaction(serverUrl, gid)).status).toBe('succeed');
    }
    // a few may come and go meanwhile (the harness's own fetch calls keep theirs a few seconds)
    expect(connectionsTo(dtmPort) - before).toBeLessThanOrEqual(2);
  });
});
