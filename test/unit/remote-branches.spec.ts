// The caller's directory of other services' branches (client/remote-branches.ts), against a local
// HTTP server playing a participant's manifest endpoint: caching, refresh, refetch after a failure
// that says a target moved, and the errors of a service that publishes nothing usable.
import { createServer, type Server } from 'node:http';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import { Logger } from '@nestjs/common';
import { DtmFailureError, DtmRemoteBranchError, DtmUnavailableError, resolveDtmConfig } from 'nestjs-dtm';
import { RemoteBranchDirectory } from '../../lib/client/remote-branches.js';
import { RecordingLogger } from '../support/recording-logger.js';

let server: Server;
let base: string;
let fetches = 0;
/** What the manifest endpoint answers next; `then`: after `body`, `stall` (nothing more, never ends) or `flood` (more bytes until the caller leaves). */
let answer: { status: number; body: string; then?: 'stall' | 'flood' };

const manifest = (port: number) =>
  JSON.stringify({
    format: 'nestjs-dtm.branches/1',
    branches: [
      { name: 'withdraw', kind: 'saga', ops: { action: { http: `http://bank:${port}/withdraw` }, compensate: { http: `http://bank:${port}/withdraw-revert` } } },
      { name: 'reserve', kind: 'tcc', ops: { try: { grpc: 'stock:1/s.S/Try' }, confirm: { grpc: 'stock:1/s.S/Confirm' }, cancel: { grpc: 'stock:1/s.S/Cancel' } } },
    ],
  });

beforeAll(async () => {
  server = createServer((req, res) => {
    fetches += 1;
    res.writeHead(req.url === '/dtm/branches' ? answer.status : 404, { 'content-type': 'application/json' });
    if (!answer.then) return void res.end(answer.body);
    res.write(answer.body);
    if (answer.then === 'stall') return;
    const more = () => {
      if (!res.destroyed) res.write(' '.repeat(16_384), () => setImmediate(more));
    };
    more();
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  return new Promise((done) => server.close(done));
});

const directory = (refresh = 30) => new RemoteBranchDirectory(resolveDtmConfig({ config: { services: { bank: { url: base, refresh } } } }, {}));
const withdraw = { service: 'bank', branch: 'withdraw' };

describe('RemoteBranchDirectory', () => {
  it('fetches a manifest once and resolves from it until refresh; a failure saying the target moved makes the next use refetch, another does not', async () => {
    answer = { status: 200, body: manifest(1) };
    fetches = 0;
    const d = directory();
    expect(await d.resolve(withdraw, 'saga', 'http')).toEqual({ action: 'http://bank:1/withdraw', compensate: 'http://bank:1/withdraw-revert' });
    await d.resolve(withdraw, 'saga', 'grpc');
    expect(fetches).toBe(1);
    d.failed('bank', new DtmFailureError('refused'));
    answer = { status: 200, body: manifest(2) };
    expect((await d.resolve(withdraw, 'saga', 'http')).action).toBe('http://bank:1/withdraw');
    d.failed('bank', new DtmUnavailableError('connection refused'));
    expect((await d.resolve(withdraw, 'saga', 'http')).action).toBe('http://bank:2/withdraw');
    expect(fetches).toBe(2);
  });

  it('refetches once the manifest is older than refresh; keeps the old one while the service does not answer', async () => {
    answer = { status: 200, body: manifest(1) };
    const d = directory(0.05);
    await d.resolve(withdraw, 'saga', 'http');
    await new Promise((done) => setTimeout(done, 60));
    answer = { status: 503, body: '' };
    expect((await d.resolve(withdraw, 'saga', 'http')).action).toBe('http://bank:1/withdraw');
  });

  it('a service with a saga step and a TCC branch of one name (its manifest lists both): each kind resolves to its own', async () => {
    // what a participant with @SagaAction('move') + @SagaCompensate('move') and @TccTry('move') + ... publishes
    const move = (op: string) => ({ http: `http://bank:1/move-${op}` });
    answer = {
      status: 200,
      body: JSON.stringify({
        format: 'nestjs-dtm.branches/1',
        branches: [
          { name: 'move', kind: 'saga', ops: { action: move('action'), compensate: move('compensate') } },
          { name: 'move', kind: 'tcc', ops: { try: move('try'), confirm: move('confirm'), cancel: move('cancel') } },
        ],
      }),
    };
    const d = directory();
    expect(await d.resolve({ service: 'bank', branch: 'move' }, 'saga', 'http')).toEqual({ action: 'http://bank:1/move-action', compensate: 'http://bank:1/move-compensate' });
    expect(await d.resolve({ service: 'bank', branch: 'move' }, 'tcc', 'http')).toEqual({ try: 'http://bank:1/move-try', confirm: 'http://bank:1/move-confirm', cancel: 'http://bank:1/move-cancel' });
    await expect(d.check([{ service: 'bank', branch: 'move', kind: 'saga' }, { service: 'bank', branch: 'move', kind: 'tcc' }])).resolves.toBeUndefined();
    const wrong = await d.resolve({ service: 'bank', branch: 'move' }, 'xa', 'http').catch((e: unknown) => e);
    expect(wrong).toMatchObject({ problem: 'kind' });
  });

  it('gRPC targets only in a gRPC transaction: a gRPC-only branch in an HTTP transaction is a transport mismatch', async () => {
    answer = { status: 200, body: manifest(1) };
    const d = directory();
    expect(await d.resolve({ service: 'bank', branch: 'reserve' }, 'tcc', 'grpc')).toEqual({ try: 'stock:1/s.S/Try', confirm: 'stock:1/s.S/Confirm', cancel: 'stock:1/s.S/Cancel' });
    await expect(d.resolve({ service: 'bank', branch: 'reserve' }, 'tcc', 'http')).rejects.toMatchObject({ problem: 'transport' });
  });

  it('an op published with an empty or null target object: DtmRemoteBranchError saying the manifest lacks that op, on either protocol', async () => {
    for (const empty of [{}, null]) {
      for (const [op, ops] of [
        ['action', { action: empty, compensate: { http: 'http://bank:1/withdraw-revert' } }],
        // a compensation published without a target is not dropped (the step would have none)
        ['compensate', { action: { http: 'http://bank:1/withdraw' }, compensate: empty }],
      ] as const) {
        answer = { status: 200, body: JSON.stringify({ format: 'nestjs-dtm.branches/1', branches: [{ name: 'withdraw', kind: 'saga', ops }] }) };
        for (const protocol of ['http', 'grpc'] as const) {
          const err = await directory().resolve(withdraw, 'saga', protocol).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(DtmRemoteBranchError);
          expect(err).toMatchObject({ problem: 'manifest', message: expect.stringContaining(`service "bank" publishes branch "withdraw" without a target for op ${op}`) });
        }
      }
    }
  });

  it('a gRPC-only branch in an HTTP transaction: the transport error names gRPC and says how to start the transaction', async () => {
    answer = { status: 200, body: manifest(1) };
    const err = await directory().resolve({ service: 'bank', branch: 'reserve' }, 'tcc', 'http').catch((e: unknown) => e);
    expect((err as Error).message).toBe('branch "reserve" of service "bank" is served over gRPC only, and DTM calls the branches of an HTTP transaction over HTTP only: start the transaction with { protocol: \'grpc\' } (DTM then calls HTTP and gRPC branches)');
  });

  it('a service that does not publish (404), answers no manifest, or lists a target that is not one: DtmRemoteBranchError naming why', async () => {
    answer = { status: 404, body: '' };
    const err = await directory().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmRemoteBranchError);
    expect((err as Error).message).toContain('set lynx.dtm.publish_branches: true on it');
    answer = { status: 200, body: '<html>' };
    await expect(directory().resolve(withdraw, 'saga', 'http')).rejects.toThrow('not JSON');
    answer = { status: 200, body: JSON.stringify({ format: 'nestjs-dtm.branches/1', branches: [{ name: 'withdraw', kind: 'saga', ops: { action: { http: 'ftp://x' } } }] }) };
    await expect(directory().resolve(withdraw, 'saga', 'http')).rejects.toThrow('has a http target that is not one');
  });

  it('a hostile manifest cannot forge log lines or flood an error: names, kinds and transports that are none are refused (quoted), and an unknown branch lists a bounded number of names', async () => {
    const one = (branch: object) => JSON.stringify({ format: 'nestjs-dtm.branches/1', branches: [branch] });
    const forged = 'x\r\n[Nest] 1 - ERROR [DtmBranch] forged\u001b[31m';
    const controls = /[\u0000-\u001f\u007f-\u009f]/;
    answer = { status: 200, body: one({ name: forged, kind: 'saga', ops: { action: { http: 'http://bank:1/a' } } }) };
    let err = await directory().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmRemoteBranchError);
    expect((err as Error).message).toContain('a branch name that is not one');
    expect((err as Error).message).not.toMatch(controls);
    answer = { status: 200, body: one({ name: 'withdraw', kind: 'saga', ops: { action: { [forged]: 'http://bank:1/a' } } }) };
    err = await directory().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmRemoteBranchError);
    expect((err as Error).message).not.toMatch(controls);
    // a kind that is a property every object has is no kind
    answer = { status: 200, body: one({ name: 'withdraw', kind: 'constructor', ops: { action: { http: 'http://bank:1/a' } } }) };
    await expect(directory().resolve(withdraw, 'saga', 'http')).rejects.toThrow('a branch without name, kind or ops');
    // 30,000 branches (2 MB, under max_answer_bytes), none of them the one asked for
    answer = { status: 200, body: JSON.stringify({ format: 'nestjs-dtm.branches/1', branches: Array.from({ length: 30_000 }, (_, i) => ({ name: `b${i}`, kind: 'saga', ops: { action: { http: 'http://bank:1/a' } } })) }) };
    err = await directory().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmRemoteBranchError);
    expect((err as Error).message).toContain('has no branch "withdraw"');
    expect((err as Error).message).toContain('and 29980 more');
    expect((err as Error).message.length).toBeLessThan(1_000);
  });

  it('a manifest answered with a redirect is not followed: the place it names is never asked, and the error is typed, naming the status', async () => {
    let reached = 0;
    const elsewhere = createServer((_req, res) => {
      reached += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(manifest(9));
    });
    await new Promise<void>((done) => elsewhere.listen(0, '127.0.0.1', done));
    const redirecting = createServer((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/dtm/branches` });
      res.end();
    });
    await new Promise<void>((done) => redirecting.listen(0, '127.0.0.1', done));
    try {
      const d = new RemoteBranchDirectory(resolveDtmConfig({ config: { services: { bank: { url: `http://127.0.0.1:${(redirecting.address() as { port: number }).port}` } } } }, {}));
      const err = await d.resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmUnavailableError);
      expect((err as Error).message).toContain('(HTTP 302, a redirect, not followed)');
      expect(reached).toBe(0);
    } finally {
      await Promise.all([elsewhere, redirecting].map((server) => new Promise((done) => server.close(done))));
    }
  });

  it('a manifest whose body stalls, or never ends, is a typed error within the bounds (timeout, max_answer_bytes), not a hang or a raw abort', async () => {
    const bounded = () => new RemoteBranchDirectory(resolveDtmConfig({ config: { timeout: 1, maxAnswerBytes: 65_536, services: { bank: { url: base } } } }, {}));
    answer = { status: 200, body: '{"format":"nestjs-dtm.branches/1","branches":[', then: 'stall' };
    const stalled = await bounded().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(stalled).toBeInstanceOf(DtmUnavailableError);
    expect((stalled as Error).message).toBe(`the branch manifest of service "bank" could not be fetched from ${base}/dtm/branches (no complete answer within 1 s) and none was fetched before; start the service, or fix lynx.dtm.services.bank`);
    // an endless body: refused once past max_answer_bytes, long before the timeout
    answer = { status: 200, body: '{"format":"nestjs-dtm.branches/1","branches":[', then: 'flood' };
    const started = Date.now();
    const flooded = await bounded().resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(flooded).toBeInstanceOf(DtmRemoteBranchError);
    expect((flooded as DtmRemoteBranchError).problem).toBe('manifest');
    expect((flooded as Error).message).toContain('with something unusable (over 65536 bytes)');
    expect(Date.now() - started).toBeLessThan(900);
  });

  it('a gRPC manifest over max_answer_bytes is refused as over HTTP: DtmRemoteBranchError (manifest), not a service that did not answer', async () => {
    const grpcServer = new GrpcServer();
    const bytes = (b: Buffer) => b;
    // nestjs_dtm.BranchManifest { json = 1 }: 70 000 bytes of JSON, over the 65 536 the caller reads
    const json = Buffer.from(JSON.stringify({ format: 'nestjs-dtm.branches/1', branches: [], padding: ' '.repeat(70_000) }));
    const reply = Buffer.concat([Buffer.from([0x0a, (json.length & 0x7f) | 0x80, ((json.length >> 7) & 0x7f) | 0x80, json.length >> 14]), json]);
    grpcServer.addService(
      { Manifest: { path: '/nestjs_dtm.Branches/Manifest', requestStream: false, responseStream: false, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } },
      { Manifest: (_call: unknown, callback: (err: null, reply: Buffer) => void) => callback(null, reply) },
    );
    const port = await new Promise<number>((done, fail) => grpcServer.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? fail(err) : done(bound))));
    try {
      const d = new RemoteBranchDirectory(resolveDtmConfig({ config: { maxAnswerBytes: 65_536, services: { stock: { grpc: `127.0.0.1:${port}` } } } }, {}));
      const err = await d.resolve({ service: 'stock', branch: 'take' }, 'saga', 'grpc').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmRemoteBranchError);
      expect((err as Error).message).toBe(`service "stock" answered its manifest at 127.0.0.1:${port}/nestjs_dtm.Branches/Manifest with something unusable (over 65536 bytes); is it a nestjs-dtm app with publish_branches?`);
    } finally {
      grpcServer.forceShutdown();
    }
  });

  it('a service never reached: DtmUnavailableError naming its manifest endpoint', async () => {
    const d = new RemoteBranchDirectory(resolveDtmConfig({ config: { timeout: 2, services: { bank: { url: 'http://127.0.0.1:1' } } } }, {}));
    const err = await d.resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmUnavailableError);
    expect((err as Error).message).toContain('http://127.0.0.1:1/dtm/branches');
  });

  it('what fetch says of a URL with credentials (which it refuses, repeating the URL) is redacted in the error and in the start-up warning', async () => {
    // the configuration refuses such a URL: a DtmConfig built by hand gets past it
    const config = { ...resolveDtmConfig({}, {}), services: { bank: { url: base.replace('http://', 'http://user:s3cr3tPW@'), refresh: 30 } } };
    const err = await new RemoteBranchDirectory(config).resolve(withdraw, 'saga', 'http').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmUnavailableError);
    expect((err as Error).message).toContain('includes credentials');
    expect(inspect(err, { depth: 10 })).not.toContain('s3cr3tPW');
    const logger = new RecordingLogger();
    Logger.overrideLogger(logger);
    try {
      await new RemoteBranchDirectory(config).check([{ service: 'bank', branch: 'withdraw', kind: 'saga' }]);
    } finally {
      Logger.overrideLogger(false);
      Logger.overrideLogger(new Logger());
    }
    expect(logger.lines).toEqual([expect.stringMatching(/^warn service "bank" did not answer its branch manifest at start-up \(.*includes credentials/)]);
    expect(logger.lines.join('\n')).not.toContain('s3cr3tPW');
  });

  it('the start-up check lists every problem of the contracts at once', async () => {
    answer = { status: 200, body: manifest(1) };
    const err = await directory()
      .check([
        { service: 'bank', branch: 'withdrw', kind: 'saga' },
        { service: 'bank', branch: 'reserve', kind: 'saga' },
        { service: 'shipping', branch: 'ship', kind: 'msg' },
      ])
      .catch((e: unknown) => e);
    expect((err as DtmRemoteBranchError).problems.map((p) => p.problem)).toEqual(['unknown-branch', 'kind', 'unknown-service']);
    expect((err as Error).message).toContain('service "bank" has no branch "withdrw"; its branches: reserve (tcc), withdraw (saga)');
  });

  it('the start-up check asks the services at once: three that accept and never answer hold start-up one timeout, not three; each deferred with its warning, the problems of the others still listed in order', async () => {
    answer = { status: 200, body: manifest(1) };
    const held = createServer(() => undefined); // accepts, reads, never answers
    await new Promise<void>((done) => held.listen(0, '127.0.0.1', done));
    const silent = `http://127.0.0.1:${(held.address() as { port: number }).port}`;
    const logger = new RecordingLogger();
    Logger.overrideLogger(logger);
    try {
      const services = { a: { url: silent }, b: { url: `${silent}/b` }, c: { url: `${silent}/c` }, bank: { url: base } };
      const d = new RemoteBranchDirectory(resolveDtmConfig({ config: { timeout: 2, services } }, {}));
      const started = Date.now();
      const err = await d
        .check([
          { service: 'a', branch: 'x', kind: 'saga' },
          { service: 'bank', branch: 'withdrw', kind: 'saga' },
          { service: 'b', branch: 'x', kind: 'saga' },
          { service: 'c', branch: 'x', kind: 'saga' },
          { service: 'bank', branch: 'reserve', kind: 'saga' },
        ])
        .catch((e: unknown) => e);
      const took = Date.now() - started;
      expect((err as DtmRemoteBranchError).problems.map((p) => `${p.service} ${p.branch} ${p.problem}`)).toEqual(['bank withdrw unknown-branch', 'bank reserve kind']);
      expect(logger.lines.filter((l) => l.includes('no complete answer within 2 s')).length).toBe(3);
      // one at a time: 3 x 2 s at least; at once: about 2 s
      expect(took).toBeLessThan(5000);
    } finally {
      Logger.overrideLogger(false);
      Logger.overrideLogger(new Logger());
      held.closeAllConnections();
      await new Promise((done) => held.close(done));
    }
  }, 20_000);
});
