// Calls to DTM (and to the branches the module calls itself) are bounded, whatever the peer does: a
// deadline for the whole call (headers and body), a size limit on answers, no proxy taken from the
// environment; DTM's answers are checked before use; and options out of the ranges DTM and Node
// honour are refused before anything is sent. Each attack runs against a hostile local server (or
// the real DTM server) and the test asserts the outcome: the error, the time, what reached whom.
import { spawn } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import axios from 'axios';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { DtmConfigError, DtmModule, DtmOutcomeUnknownError, DtmServerError, DtmUnavailableError, DtmUsageError, type DtmProtocol } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { dtmPost, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { answerSwallowingProxy } from '../support/swallow-proxy.js';
import { startTrap } from '../support/trap.js';

const MiB = 1024 * 1024;

let recorder: Recorder;
let app: DtmTestApp;
beforeAll(async () => {
  recorder = await startRecorder();
  app = await startDtmApp();
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
});

/** A local HTTP server answering with `handler`; `close()` also cuts the connections it holds. */
async function hostileHttp(handler: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer(handler);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * An address that takes no connection: a listener in a child process, stopped (SIGSTOP) with its
 * accept queue filled, so the kernel drops further SYNs and a connect waits (as to a host that is
 * down, or behind a firewall that drops packets).
 */
async function fullListenQueue(): Promise<{ url: string; close(): void }> {
  const child = spawn(process.execPath, ['-e', "const s = require('net').createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => console.log(s.address().port));"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the listener exited (${code})`)));
  });
  child.kill('SIGSTOP');
  const fillers = Array.from({ length: 4 }, () => net.connect(port, '127.0.0.1').on('error', () => undefined));
  await new Promise((resolve) => setTimeout(resolve, 300));
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}

/** A local HTTP/2 server speaking just enough gRPC to answer every call with `answer`. */
async function hostileGrpc(answer: (stream: http2.ServerHttp2Stream) => void): Promise<{ address: string; close(): Promise<void> }> {
  const sessions = new Set<http2.Http2Session>();
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    answer(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      for (const session of sessions) session.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A gRPC message frame: no compression, a 4-byte length, the message. */
function grpcFrame(message: Buffer, claimedLength = message.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(claimedLength, 1);
  return Buffer.concat([head, message]);
}

/** `dtmgimp.DtmGidReply { Gid = gid }` in protobuf (field 1, length-delimited). */
function gidReply(gid: Buffer): Buffer {
  const length = gid.length < 128 ? [gid.length] : [(gid.length & 0x7f) | 0x80, gid.length >> 7];
  return Buffer.concat([Buffer.from([0x0a, ...length]), gid]);
}

/** Answers a gRPC call with `message` and status OK. */
function answerGrpc(stream: http2.ServerHttp2Stream, message: Buffer): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(grpcFrame(message));
}

/** Writes `total` bytes of one reused chunk to `write`, respecting backpressure, until done or the peer goes; counts what was accepted. */
function pour(target: { write(chunk: Buffer): boolean; once(event: 'drain', listener: () => void): unknown; destroyed: boolean }, total: number, sent: { bytes: number }): void {
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const pump = () => {
    while (sent.bytes < total && !target.destroyed) {
      sent.bytes += chunk.length;
      if (!target.write(chunk)) {
        target.once('drain', pump);
        return;
      }
    }
  };
  pump();
}

/** Runs `call` and returns its error, how long it took, and how much the process's resident memory grew at most meanwhile. */
async function measure(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number; peakGrowthMiB: number }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  const started = Date.now();
  let error: unknown;
  try {
    await call();
  } catch (err) {
    error = err;
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  return { error, ms: Date.now() - started, peakGrowthMiB: (peak - before) / MiB };
}

describe('timeout is a deadline for the whole call, body included', () => {
  it('HTTP: a server that sends headers and then drips its body (8 s in all) fails a 1 s call in about 1 s', async () => {
    let closedAfter = Infinity;
    const server = await hostileHttp((_req, res) => {
      const started = Date.now();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"gid":"');
      const drip = setInterval(() => res.write('a'), 200);
      const end = setTimeout(() => res.end('"}'), 8000);
      res.on('close', () => {
        clearInterval(drip);
        clearTimeout(end);
        closedAfter = Date.now() - started;
      });
    });
    const dripped = await startDtmApp({ config: { serverUrl: `${server.url}/api/dtmsvr`, timeout: 1 } });
    try {
      const { error, ms } = await measure(() => dripped.client.generateGid());
      expect(error).toBeInstanceOf(DtmUnavailableError);
      // the server had accepted the connection: not "could not reach"
      expect((error as Error).message).toMatch(
        /^no complete answer from http:\/\/127\.0\.0\.1:\d+\/api\/dtmsvr\/newGid within the timeout \(1 s\), on a connection it accepted: .*the request may or may not have reached DTM\. If DTM is only slow, raise lynx\.dtm\.timeout$/,
      );
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(4000); // the drip's 8 s, read to its end, would pass it
      // the module hung up: the server's answer was cut, not read to its end
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(closedAfter).toBeLessThan(4000);
    } finally {
      await dripped.close();
      await server.close();
    }
  });

  it('HTTP: a TCC Try that drips its answer fails at the branch timeout, and DTM rolls the transaction back', async () => {
    const server = await hostileHttp((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 200);
      res.on('close', () => clearInterval(drip));
    });
    const tcc = await startDtmApp({ config: { branchTimeout: 1 } });
    try {
      const gid = await tcc.client.generateGid();
      const { error, ms } = await measure(() =>
        tcc.client.tccGlobalTransaction(gid, (t) => t.callBranch({ n: 1 }, `${server.url}/try`, recorder.urlFor('/DripConfirm'), recorder.urlFor('/DripCancel'))),
      );
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(
        /^no complete answer from the branch http:\/\/127\.0\.0\.1:\d+\/try within its timeout \(1 s\), on a connection it accepted: .*If the branch is only slow, raise lynx\.dtm\.branch_timeout$/,
      );
      // the Try's 1 s and the TCC's own calls to DTM (prepare, registerBranch, abort) on a loaded
      // machine; a Try not cut at its timeout would be dripped to for ever
      expect(ms).toBeLessThan(6000);
      const final = await waitForTransStatus(gid, 'failed');
      expect(final.branches.map((b) => [b.op, b.status])).toEqual([
        ['cancel', 'succeed'],
        ['confirm', 'prepared'],
      ]);
      expect(recorder.callsTo('/DripConfirm', gid)).toHaveLength(0);
    } finally {
      await tcc.close();
      await server.close();
    }
  });

  /** Per protocol: what a call to a DTM address that takes no connection answers, and a saga's steps there. */
  const NO_CONNECTION = {
    http: {
      newGid: /^could not reach http:\/\/127\.0\.0\.1:\d+\/api\/dtmsvr\/newGid \(ETIMEDOUT, no connection\); check that the DTM server runs there and lynx\.dtm\.server_url points at it \(timeout 1 s\)$/,
      submit: /^could not reach .*\/query\?gid=g-nowhere-http-0001 \(ETIMEDOUT, no connection\)/,
      steps: ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b', {}] as const,
    },
    grpc: {
      // grpc-js's own words for a call still waiting for a connection: pinned, as the module reads them
      newGid: /^could not reach 127\.0\.0\.1:\d+\/dtmgimp\.Dtm\/NewGid \(no connection: Deadline exceeded after [\d.]+s,.*Waiting for LB pick\); check that the DTM server runs there and lynx\.dtm\.grpc_server points at it \(timeout 1 s\)$/,
      // submitAndWait's check of the gid (a query: over HTTP, DTM's gRPC API has none) is its first call
      submit: /^could not reach .*\/query\?gid=g-nowhere-grpc-0001 \(ETIMEDOUT, no connection\)/,
      steps: ['127.0.0.1:9/svc.Bank/A', '127.0.0.1:9/svc.Bank/B', new Uint8Array(0)] as const,
    },
  };

  /** An app whose DTM (HTTP and gRPC) is at a listener that takes no connection. */
  const unreachableDtm = async (protocol: DtmProtocol) => {
    const nowhere = await fullListenQueue();
    const app = await startDtmApp({ config: { protocol, serverUrl: `${nowhere.url}/api/dtmsvr`, grpcServer: nowhere.url.replace('http://', ''), timeout: 1 } });
    return { app, close: async () => (await app.close(), nowhere.close()) };
  };

  it.each(PROTOCOLS)('%s: a DTM address that takes no connection fails a 1 s call in about 1 s with "could not reach ... no connection" (not "no complete answer"), and the call counts as never sent', async (protocol) => {
    const unreachable = await unreachableDtm(protocol);
    try {
      const { error, ms } = await measure(() => unreachable.app.client.generateGid());
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(NO_CONNECTION[protocol].newGid);
      expect((error as { cause?: { connected?: boolean } }).cause?.connected).toBe(false);
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(4000); // the system's own connect timeout is minutes
    } finally {
      await unreachable.close();
    }
  });

  it.each(PROTOCOLS)('%s submitAndWait: a submit that got no connection is "DTM never got it" at once (DtmUnavailableError); one a server took and never answered may have reached DTM (DtmOutcomeUnknownError after the wait)', async (protocol) => {
    const unreachable = await unreachableDtm(protocol);
    // take every request / call, never answer (the status queries go over HTTP on both protocols: DTM's gRPC API has none)
    const silentHttp = await hostileHttp(() => undefined);
    const silentGrpc = await hostileGrpc(() => undefined);
    const unanswered = await startDtmApp({ config: { protocol, serverUrl: `${silentHttp.url}/api/dtmsvr`, grpcServer: silentGrpc.address, timeout: 1 } });
    try {
      const [action, compensate, payload] = NO_CONNECTION[protocol].steps;
      const saga = (client: DtmTestApp['client']) => client.newSaga(`g-nowhere-${protocol}-0001`).add(action, compensate, payload).submitAndWait({ timeout: 4 });
      const neverGot = await measure(() => saga(unreachable.app.client));
      expect(neverGot.error).toBeInstanceOf(DtmUnavailableError);
      expect((neverGot.error as Error).message).toMatch(NO_CONNECTION[protocol].submit);
      expect(neverGot.ms).toBeLessThan(3000); // below the wait's 4 s (mayHave's): not waited out: nothing was sent, and the submit is not tried after a check of the gid that got no connection
      const mayHave = await measure(() => saga(unanswered.client));
      expect(mayHave.error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(mayHave.ms).toBeGreaterThanOrEqual(3900);
    } finally {
      await unreachable.close();
      await unanswered.close();
      await silentHttp.close();
      await silentGrpc.close();
    }
  });

  it('gRPC: a server that sends headers and drips a message fails a 1 s call in about 1 s (DEADLINE_EXCEEDED)', async () => {
    const server = await hostileGrpc((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.write(Buffer.from([0, 0, 0, 0, 100]));
      const drip = setInterval(() => stream.write(Buffer.from('a')), 200);
      stream.on('close', () => clearInterval(drip));
    });
    const dripped = await startDtmApp({ config: { protocol: 'grpc', grpcServer: server.address, timeout: 1 } });
    try {
      const { error, ms } = await measure(() => dripped.client.generateGid());
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect(error).toMatchObject({ protocol: 'grpc', status: grpc.status.DEADLINE_EXCEEDED });
      expect((error as Error).message).toMatch(/^no complete answer from 127\.0\.0\.1:\d+\/dtmgimp\.Dtm\/NewGid within the timeout \(1 s\), on a connection it accepted \(Deadline exceeded .*remote_addr=127\.0\.0\.1:\d+\)/);
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(4000); // the drip never ends
    } finally {
      await dripped.close();
      await server.close();
    }
  });

  it.each(PROTOCOLS)("over %s, a wait's timeout bounds its looks at DTM's record: waitForFinal({ timeout: 1 }) against a DTM that accepts and never answers ends in about 1 s with DtmOutcomeUnknownError, not after lynx.dtm.timeout (10 s)", async (protocol) => {
    const trap = await startTrap({ hold: true });
    const app = await startDtmApp({ config: { protocol, serverUrl: trap.url, timeout: 10 } });
    try {
      const { error, ms } = await measure(() => app.client.waitForFinal('waitboundgid0001', { timeout: 1 }));
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((error as Error).message).toMatch(/^the outcome of waitboundgid0001 is not known after 1 s: DTM could not be asked \(no complete answer from http:\/\/127\.0\.0\.1:\d+\/api\/dtmsvr\/query\?gid=waitboundgid0001 within the timeout/);
      expect(ms).toBeGreaterThanOrEqual(900);
      // before: 10 s, each look bounded by lynx.dtm.timeout alone; now the wait's 1 s and at most one look of LAST_LOOK_MIN_MS after it
      expect(ms).toBeLessThan(5000);
    } finally {
      await app.close();
      await trap.close();
    }
  });
});

describe('answers over max_answer_bytes are refused while they stream in', () => {
  it('HTTP: a 300 MB /query answer fails with DtmServerError, read only to the limit, memory bounded', async () => {
    const sent = { bytes: 0 };
    const server = await hostileHttp((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"transaction":{"gid":"');
      pour(res, 300 * MiB, sent);
    });
    const big = await startDtmApp({ config: { serverUrl: `${server.url}/api/dtmsvr` } });
    try {
      const { error, ms, peakGrowthMiB } = await measure(() => big.client.query('some-gid'));
      expect(error).toBeInstanceOf(DtmServerError);
      expect(error).toMatchObject({ protocol: 'http', endpoint: `${server.url}/api/dtmsvr/query?gid=some-gid` });
      expect((error as Error).message).toContain('answered more than 8388608 bytes (lynx.dtm.max_answer_bytes); the answer was not read');
      expect(ms).toBeLessThan(5000);
      expect(sent.bytes).toBeLessThan(64 * MiB); // the server could not push the 300 MB: the module stopped reading
      expect(peakGrowthMiB).toBeLessThan(200); // reading it whole took 0.9 GB
    } finally {
      await big.close();
      await server.close();
    }
  });

  it('HTTP: a TCC Try answering 300 MB fails with DtmServerError and the transaction rolls back', async () => {
    const sent = { bytes: 0 };
    const server = await hostileHttp((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      pour(res, 300 * MiB, sent);
    });
    try {
      const gid = await app.client.generateGid();
      const { error, peakGrowthMiB } = await measure(() =>
        app.client.tccGlobalTransaction(gid, (t) => t.callBranch({ n: 1 }, `${server.url}/try`, recorder.urlFor('/BigConfirm'), recorder.urlFor('/BigCancel'))),
      );
      expect(error).toBeInstanceOf(DtmServerError);
      expect((error as Error).message).toMatch(/^the branch http:\/\/127\.0\.0\.1:\d+\/try answered more than 8388608 bytes/);
      expect(sent.bytes).toBeLessThan(64 * MiB);
      expect(peakGrowthMiB).toBeLessThan(200);
      expect((await waitForTransStatus(gid, 'failed')).transaction?.status).toBe('failed');
      expect(recorder.callsTo('/BigConfirm', gid)).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('gRPC: an answer announcing 300 MB fails with DtmServerError at its length prefix', async () => {
    const sent = { bytes: 0 };
    const server = await hostileGrpc((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.write(Buffer.from([0, 0x12, 0xc0, 0x00, 0x00])); // 314572800 bytes to come
      pour(stream, 300 * MiB, sent);
    });
    const big = await startDtmApp({ config: { protocol: 'grpc', grpcServer: server.address } });
    try {
      const { error, ms, peakGrowthMiB } = await measure(() => big.client.generateGid());
      expect(error).toBeInstanceOf(DtmServerError);
      expect(error).toMatchObject({ protocol: 'grpc', endpoint: `${server.address}/dtmgimp.Dtm/NewGid` });
      expect((error as Error).message).toContain('answered more than 8388608 bytes');
      expect(ms).toBeLessThan(5000);
      expect(sent.bytes).toBeLessThan(64 * MiB);
      expect(peakGrowthMiB).toBeLessThan(200);
    } finally {
      await big.close();
      await server.close();
    }
  });

  it('the real DTM: a query of a transaction with a 100 KB payload passes the default limit and fails a 64 KiB one', async () => {
    const payload = { blob: 'b'.repeat(100 * 1024) };
    const gid = await app.client.generateGid();
    await app.client.newSaga(gid).add(recorder.urlFor('/BigPayload'), payload).submit();
    const record = await app.client.query(gid);
    expect(JSON.parse(record!.branches.find((b) => b.op === 'action')!.data.toString('utf8'))).toEqual(payload);

    const small = await startDtmApp({ config: { maxAnswerBytes: 64 * 1024 } });
    try {
      const error = await small.client.query(gid).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmServerError);
      expect((error as Error).message).toContain('answered more than 65536 bytes (lynx.dtm.max_answer_bytes)');
    } finally {
      await small.close();
    }
  });
});

describe('a wait whose status query DTM answers over max_answer_bytes (the record holds each payload several times)', () => {
  // default settings: an HTTP saga of 3 x 0.9 MB (its /query answer 9.9 MB), a gRPC one of 3 x 1.3 MB (10.4 MB); here the
  // least limit (64 KiB) and payloads of 2 x 25 kB, whose /query answers are over it, and whose /all answers (the status alone) are not
  it.each(PROTOCOLS)('over %s: submitAndWait reads the status alone and ends with DtmOutcomeUnknownError carrying the final status and naming the setting, not "unknown" at the first look', async (protocol) => {
    const small = await startDtmApp({ config: { protocol, maxAnswerBytes: 64 * 1024 } });
    try {
      const gid = await small.client.generateGid();
      const saga = small.client.newSaga(gid);
      for (const step of ['A', 'B']) {
        if (protocol === 'http') saga.add(recorder.urlFor(`/Large${step}`), recorder.urlFor(`/Large${step}Revert`), { blob: step.repeat(25_000) });
        else saga.add(recorder.grpcTargetFor(`/Large${step}`), recorder.grpcTargetFor(`/Large${step}Revert`), Buffer.alloc(25_000, step));
      }
      const error = await saga.submitAndWait({ timeout: 20 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(error).toMatchObject({ gid, lastStatus: 'succeed' });
      expect((error as Error).message).toContain(`DTM holds ${gid} "succeed", read alone: its record with its branches is more than 65536 bytes (lynx.dtm.max_answer_bytes;`);
      expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
      // a wait of its own, the same
      await expect(small.client.waitForFinal(gid, { timeout: 5 })).rejects.toMatchObject({ lastStatus: 'succeed' });
    } finally {
      await small.close();
    }
  });

  it('a saga rolled back: lastStatus failed; one that does not finish in time: its last status, after the wait', async () => {
    const small = await startDtmApp({ config: { maxAnswerBytes: 64 * 1024 } });
    try {
      recorder.answer('/LargeRefused', { status: 409, body: { dtm_result: 'FAILURE', message: 'refused' } });
      const failed = await small.client.generateGid();
      const rolledBack = small.client.newSaga(failed).add(recorder.urlFor('/LargeOk'), recorder.urlFor('/LargeOkRevert'), { blob: 'a'.repeat(25_000) });
      rolledBack.add(recorder.urlFor('/LargeRefused'), recorder.urlFor('/LargeRefusedRevert'), { blob: 'b'.repeat(25_000) });
      await expect(rolledBack.submitAndWait({ timeout: 20 })).rejects.toMatchObject({ name: 'DtmOutcomeUnknownError', gid: failed, lastStatus: 'failed' });

      recorder.answer('/LargeSlow', { status: 500, body: 'not yet' });
      const slow = await small.client.generateGid();
      const started = Date.now();
      const pending = small.client.newSaga(slow, { retryInterval: 60 }).add(recorder.urlFor('/LargeSlow'), recorder.urlFor('/LargeSlowRevert'), { blob: 'c'.repeat(40_000) });
      const error = await pending.submitAndWait({ timeout: 2 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'DtmOutcomeUnknownError', gid: slow, lastStatus: 'submitted' });
      expect((error as Error).message).toContain(`the outcome of ${slow} is not known after 2 s: DTM holds it "submitted", read alone`);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      await dtmPost('/forceStop', { gid: slow });
    } finally {
      await small.close();
    }
  });

  it('the app closed while the wait reads the status alone: the wait ends then, saying the app closed (its last status, the record over max_answer_bytes as the cause), not that the outcome is unknown after the wait', async () => {
    let listed!: () => void;
    const readingAlone = new Promise<void>((done) => (listed = done));
    const small = await startDtmApp({ config: { maxAnswerBytes: 64 * 1024 }, instrumentation: { hooks: { 'dtm.call': (e) => void (e.operation === 'list' && listed()) } } });
    let open = true;
    try {
      recorder.answer('/LargeHeld', { status: 500, body: 'not yet' });
      const gid = await small.client.generateGid();
      const saga = small.client.newSaga(gid, { retryInterval: 60 }).add(recorder.urlFor('/LargeHeld'), recorder.urlFor('/LargeHeldRevert'), { blob: 'd'.repeat(40_000) });
      const waiting = saga.submitAndWait({ timeout: 30 }).catch((e: unknown) => e);
      await readingAlone; // its first read of the status alone is done: the wait pauses before the next
      const closing = Date.now();
      await small.close();
      open = false;
      const error = await waiting;
      expect(Date.now() - closing).toBeLessThan(10_000); // not the 30 s of the wait
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(error).toMatchObject({ gid, lastStatus: 'submitted' });
      expect((error as Error).message).toBe(
        `the app closed while waiting for the outcome of ${gid} (last known status "submitted"): the wait ended there, and DTM goes on with the transaction; look it up with waitForFinal("${gid}") or query("${gid}") from a running app, never start it again under a new gid`,
      );
      expect(((error as Error).cause as Error).message).toContain('answered more than 65536 bytes (lynx.dtm.max_answer_bytes)');
      await dtmPost('/forceStop', { gid });
    } finally {
      if (open) await small.close();
    }
  });

  it('a DTM that stops answering while the wait reads the status alone holds the wait to its deadline, not lynx.dtm.timeout past it', async () => {
    // every answer of GET /all is swallowed (DTM got the read; the app never hears): each read of the status alone gets what is left of the wait
    const proxy = await answerSwallowingProxy(harness().dtm.serverUrl, (request) => request.startsWith('GET /api/dtmsvr/all'));
    const small = await startDtmApp({ config: { serverUrl: proxy.url, maxAnswerBytes: 64 * 1024, timeout: 15 } });
    try {
      recorder.answer('/LargeStalled', { status: 500, body: 'not yet' });
      const gid = await small.client.generateGid();
      const saga = small.client.newSaga(gid, { retryInterval: 60 }).add(recorder.urlFor('/LargeStalled'), recorder.urlFor('/LargeStalledRevert'), { blob: 'e'.repeat(40_000) });
      const started = Date.now();
      const error = await saga.submitAndWait({ timeout: 2 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(error).toMatchObject({ gid, lastStatus: 'unknown' });
      expect((error as Error).message).toContain(`the outcome of ${gid} is not known after 2 s`);
      expect(Date.now() - started).toBeLessThan(12_000); // unbounded, the first read alone took the 15 s of lynx.dtm.timeout
      await dtmPost('/forceStop', { gid });
    } finally {
      await small.close();
      await proxy.close();
    }
  });
});

describe("DTM's answers are checked before use", () => {
  it.each<[string, RegExp]>([
    ['{"gid":""}', /answered newGid with "", which is not a gid/],
    ['{"gid":42}', /answered newGid with 42, which is not a gid/],
    ['{"gid":"a b"}', /answered newGid with "a b", which is not a gid/],
    [`{"gid":"${'x'.repeat(129)}"}`, /which is not a gid \(1 to 128 letters/],
    ['{"gid":"g\\u0000"}', /which is not a gid/],
    ['{}', /answered newGid with no gid, which is not a gid/],
    ['null', /answered newGid with "null", which is not what DTM answers/],
    ['<html>proxy error</html>', /answered newGid with "<html>proxy error<\/html>", which is not what DTM answers/],
    ['', /answered newGid with an empty body, which is not what DTM answers/],
  ])('HTTP: newGid answering %s is a DtmServerError, not a gid', async (body, message) => {
    const server = await hostileHttp((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
    const garbage = await startDtmApp({ config: { serverUrl: `${server.url}/api/dtmsvr` } });
    try {
      const error = await garbage.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmServerError);
      expect(error).toMatchObject({ protocol: 'http', endpoint: `${server.url}/api/dtmsvr/newGid` });
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain('check that lynx.dtm.server_url');
    } finally {
      await garbage.close();
      await server.close();
    }
  });

  it('HTTP: a query or list answer of the wrong shape is a DtmServerError, not a TypeError', async () => {
    const server = await hostileHttp((req, res) => res.writeHead(200).end(req.url?.includes('/query') ? '{"transaction":"x","branches":[1]}' : '[]'));
    const garbage = await startDtmApp({ config: { serverUrl: `${server.url}/api/dtmsvr` } });
    try {
      await expect(garbage.client.query('g1')).rejects.toThrow(DtmServerError);
      await expect(garbage.client.query('g1')).rejects.toThrow(/answered query with .*which is not what DTM answers/);
      await expect(garbage.client.list()).rejects.toThrow(/answered list with "\[\]", which is not what DTM answers/);
      // waiting: the outcome is not known (DTM may hold the transaction), never a plain server error a caller might take as "run it again"
      const waited = await garbage.client.waitForFinal('g1', { timeout: 2 }).catch((e: unknown) => e);
      expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((waited as Error).message).toMatch(/^the outcome of g1 is not known: DTM's answer to its status query could not be used \(.*answered query with .*\)\. DTM goes on with the transaction: fix what the cause names, then wait with waitForFinal\("g1"\)/);
      expect((waited as { cause?: unknown }).cause).toBeInstanceOf(DtmServerError);
    } finally {
      await garbage.close();
      await server.close();
    }
  });

  it.each<[string, Buffer, RegExp]>([
    ['an empty gid', Buffer.alloc(0), /answered newGid with an empty gid/],
    ['a gid with a space', gidReply(Buffer.from('a b')), /answered newGid with "a b", which is not a gid/],
    ['a gid of 200 characters', gidReply(Buffer.alloc(200, 'x')), /which is not a gid/],
    ['a gid with a control character', gidReply(Buffer.from('g\n1')), /which is not a gid/],
  ])('gRPC: NewGid answering %s is a DtmServerError', async (_what, reply, message) => {
    const server = await hostileGrpc((stream) => answerGrpc(stream, reply));
    const garbage = await startDtmApp({ config: { protocol: 'grpc', grpcServer: server.address } });
    try {
      const error = await garbage.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmServerError);
      expect(error).toMatchObject({ protocol: 'grpc', endpoint: `${server.address}/dtmgimp.Dtm/NewGid` });
      expect((error as Error).message).toMatch(message);
    } finally {
      await garbage.close();
      await server.close();
    }
  });

  it('the real DTM answers gids that pass the check, over both protocols', async () => {
    const grpcApp = await startDtmApp({ config: { protocol: 'grpc' } });
    // DTM's gids are short UUIDs in base57: 22 characters, fewer when the number is small enough (seen: 21)
    try {
      for (const gid of [await app.client.generateGid(), await grpcApp.client.generateGid()]) expect(gid).toMatch(/^[A-Za-z0-9]{16,22}$/);
    } finally {
      await grpcApp.close();
    }
  });
});

describe('proxy variables in the environment do not route the module\'s calls', () => {
  const PROXY_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'grpc_proxy', 'NO_PROXY', 'no_proxy', 'no_grpc_proxy'];
  const saved: Record<string, string | undefined> = {};
  let proxy: net.Server;
  /** The first line of every request the proxy received (`GET http://...`, `CONNECT host:port`). */
  const seen: string[] = [];
  const UNUSED_ADDRESS = '127.0.0.1:9';
  /** What the module sent through the proxy: every request but the control channel's. */
  const fromModule = () => seen.filter((line) => line !== `CONNECT ${UNUSED_ADDRESS} HTTP/1.1`);

  beforeAll(async () => {
    proxy = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', (data) => {
        seen.push(data.toString('latin1').split('\r\n')[0]);
        socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    for (const name of PROXY_VARS) saved[name] = process.env[name];
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'grpc_proxy']) process.env[name] = proxyUrl;
    for (const name of ['NO_PROXY', 'no_proxy', 'no_grpc_proxy']) delete process.env[name];
  });
  afterAll(async () => {
    for (const name of PROXY_VARS) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
    await new Promise((resolve) => proxy.close(resolve));
  });
  afterEach(() => {
    seen.length = 0;
  });

  it('(control) the variables do route a plain axios call and a plain grpc-js channel through the proxy', async () => {
    const answer = await axios.get(`${harness().dtm.serverUrl}/newGid`, { validateStatus: () => true });
    expect(answer.status).toBe(502);
    // a channel of its own to an address nothing else uses, which does not try again once refused
    const plain = new grpc.Client(UNUSED_ADDRESS, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': 3_600_000,
      'grpc.max_reconnect_backoff_ms': 3_600_000,
    });
    try {
      await new Promise<void>((resolve) => {
        plain.makeUnaryRequest('/dtmgimp.Dtm/NewGid', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), { deadline: Date.now() + 3000 }, () => resolve());
      });
    } finally {
      plain.close();
    }
    expect(seen[0]).toBe(`GET ${harness().dtm.serverUrl}/newGid HTTP/1.1`);
    expect(new Set(seen.slice(1))).toEqual(new Set([`CONNECT ${UNUSED_ADDRESS} HTTP/1.1`]));
  });

  it('HTTP: newGid, submit, query and a TCC Try the module calls itself go straight to DTM and the branch', async () => {
    const direct = await startDtmApp();
    try {
      const gid = await direct.client.generateGid();
      await direct.client.newSaga(gid).add(recorder.urlFor('/ProxyA'), recorder.urlFor('/ProxyAc'), { n: 1 }).submit();
      expect((await waitForTransStatus(gid, 'succeed')).transaction?.status).toBe('succeed');
      expect((await direct.client.query(gid))?.status).toBe('succeed');
      const tccGid = await direct.client.generateGid();
      await direct.client.tccGlobalTransaction(
        tccGid,
        (t) => t.callBranch({ n: 2 }, recorder.urlFor('/ProxyTry'), recorder.urlFor('/ProxyConfirm'), recorder.urlFor('/ProxyCancel')),
        { branchHeaders: { authorization: 'Bearer token-a-proxy-must-not-see' } },
      );
      const tries = recorder.callsTo('/ProxyTry', tccGid);
      expect(tries).toHaveLength(1);
      expect(tries[0].headers.authorization).toBe('Bearer token-a-proxy-must-not-see');
      expect(fromModule()).toEqual([]);
    } finally {
      await direct.close();
    }
  });

  it('gRPC: NewGid and Submit go straight to DTM', async () => {
    const direct = await startDtmApp({ config: { protocol: 'grpc' } });
    try {
      const gid = await direct.client.generateGid();
      await direct.client.newSaga(gid).add(recorder.grpcTargetFor('/ProxyGrpc'), new Uint8Array(0)).submit();
      expect((await waitForTransStatus(gid, 'succeed')).transaction?.protocol).toBe('grpc');
      expect(fromModule()).toEqual([]);
    } finally {
      await direct.close();
    }
  });
});

describe('options DTM and Node cannot honour are refused before anything is sent', () => {
  it('retry_interval 1e20: DTM fails the whole submit (a 500); the module refuses it with DtmUsageError and DTM records nothing', async () => {
    const raw = await app.client.generateGid();
    const answer = await dtmPost('/submit', { gid: raw, trans_type: 'saga', steps: [{ action: recorder.urlFor('/Never') }], payloads: ['{}'], retry_interval: 1e20 });
    expect(answer.status).toBe(500);

    const gid = await app.client.generateGid();
    expect(() => app.client.newSaga(gid, { retryInterval: 1e20 })).toThrow(DtmUsageError);
    expect(() => app.client.newSaga(gid, { retryInterval: 1e20 })).toThrow(
      "retryInterval must be a whole number of seconds from 1 to 2147483647 (DTM's SQL stores keep its intervals in 32-bit integers), got 100000000000000000000",
    );
    const saga = app.client.newSaga(gid).add(recorder.urlFor('/Never'), {});
    expect(() => saga.setOptions({ timeoutToFail: 2.5 })).toThrow(/timeoutToFail must be a whole number of seconds from 0 to 2147483647/);
    expect(() => saga.setOptions({ branchTimeout: 3_000_000 })).toThrow(/branchTimeout must be a whole number of seconds from 1 to 2147483 \(Node's timers/);
    expect(() => saga.setOptions({ retryLimit: -1 })).toThrow(/retryLimit must be a whole number of retries from 1/);
    await expect(app.client.tccGlobalTransaction(gid, async () => undefined, { timeoutToFail: -1 })).rejects.toThrow(DtmUsageError);
    expect(() => app.client.newMsg(gid).setDelay(1.5)).toThrow(/setDelay\(seconds\) must be a whole number of seconds from 0/);
    expect((await queryTrans(gid)).transaction).toBeNull();
  });

  it('the top of each range is what DTM stores', async () => {
    const gid = await app.client.generateGid();
    await app.client
      .newSaga(gid, { retryInterval: 2_147_483_647, timeoutToFail: 2_147_483_647, branchTimeout: 2_147_483 })
      .add(recorder.urlFor('/TopOfRange'), {})
      .submit();
    const final = await waitForTransStatus(gid, 'succeed');
    expect(final.transaction).toMatchObject({ retry_interval: 2_147_483_647, timeout_to_fail: 2_147_483_647, request_timeout: 2_147_483 });
  });

  it('the module configuration: out-of-range values fail start-up with one DtmConfigError', async () => {
    const error = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, timeout: 3_000_000, retryInterval: 1e20, branchTimeout: 0.5 } })],
    })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems.map((p) => p.path)).toEqual(['config.timeout', 'config.retryInterval', 'config.branchTimeout']);
  });

  it("waitForFinal's pollInterval and timeout within what a Node timer can wait", async () => {
    const gid = await app.client.generateGid();
    await expect(app.client.waitForFinal(gid, { pollInterval: 3_000_000 })).rejects.toThrow(/pollInterval must be a number of seconds from 0\.001 to 2147483\.647/);
    await expect(app.client.waitForFinal(gid, { timeout: Number.NaN })).rejects.toThrow(DtmUsageError);
  });
});
