// The terminus health indicator against a private real DTM server: up (version, latency) over HTTP
// and gRPC, down within lynx.dtm.timeout when DTM is stopped or does not answer, and DTM's
// transaction list unchanged by any number of health checks (the check creates nothing).
import { createServer } from 'node:http';
import net from 'node:net';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { DtmClient, DtmHealthIndicator, DtmModule, DtmUnavailableError, type DtmConfigInput } from 'nestjs-dtm';
import { harness, queryTrans } from '../support/harness.js';
import { startDtm, startDtmAgain, stopDtm, type RunningDtm } from '../support/services/dtm.js';
import { runDirFrom, sleep } from '../support/services/process.js';
import { startStallProxy } from '../support/chaos/stall-proxy.js';
import { startTrap } from '../support/trap.js';

let dtm: RunningDtm;

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly dtmHealth: DtmHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.dtmHealth.isHealthy('dtm')]);
  }
}

/** An app with TerminusModule and DtmModule, as a user wires them; answers GET /health. */
async function healthApp(config: DtmConfigInput): Promise<{ app: INestApplication; url: string }> {
  @Module({ imports: [TerminusModule.forRoot({ logger: false }), DtmModule.forRoot({ config })], controllers: [HealthController] })
  class HealthAppModule {}
  const module = await Test.createTestingModule({ imports: [HealthAppModule] }).compile();
  const app = module.createNestApplication({ logger: false, forceCloseConnections: true });
  await app.listen(0, '127.0.0.1');
  return { app, url: `${await app.getUrl()}/health`.replace('[::1]', '127.0.0.1') };
}

/** Every transaction DTM lists (all pages of /api/dtmsvr/all). */
async function allTransactions(serverUrl: string): Promise<unknown[]> {
  const all: unknown[] = [];
  let position = '';
  for (;;) {
    const answer = (await (await fetch(`${serverUrl}/all?limit=100${position ? `&position=${position}` : ''}`)).json()) as { transactions: unknown[] | null; next_position?: string };
    all.push(...(answer.transactions ?? []));
    if (!answer.next_position) return all;
    position = answer.next_position;
  }
}

/** A proxy in front of DTM's HTTP API that forwards each request `delayMs` after it came: a DTM answering slowly; `serverUrl` is its server_url. */
async function slowHttp(delayMs: number): Promise<{ serverUrl: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    setTimeout(() => {
      fetch(new URL(req.url ?? '/', dtm.info.httpUrl)).then(
        async (answer) => {
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' });
          res.end(await answer.text());
        },
        () => res.destroy(),
      );
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    serverUrl: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/api/dtmsvr`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A proxy in front of DTM's gRPC API that holds everything `delayMs` before its first connection reaches DTM (then passes all): a DTM answering the first call slowly; `grpcServer` is its address. */
async function slowGrpcOnce(delayMs: number): Promise<{ grpcServer: string; start(): void; close(): Promise<void> }> {
  const proxy = await startStallProxy(`http://${dtm.info.grpcAddress}`);
  proxy.stall();
  return { grpcServer: new URL(proxy.url).host, start: () => void setTimeout(() => proxy.resume(), delayMs), close: () => proxy.close() };
}

/**
 * A TCP relay in front of `target` (DTM's gRPC API) that can be closed like a port nothing listens on: closed, it
 * resets every connection that comes at once; `openAfterNextAttempt` waits for the next connection (a connection
 * attempt of the channel: it is reset too) and opens the relay right after it, resolving with that instant.
 */
async function gatedRelay(target: string): Promise<{ address: string; closeGate(): void; openAfterNextAttempt(timeoutMs: number): Promise<number>; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  let open = true;
  let onAttempt: (() => void) | undefined;
  const server = net.createServer((client) => {
    client.on('error', () => undefined);
    if (!open) {
      client.resetAndDestroy();
      onAttempt?.();
      return;
    }
    const upstream = net.connect(port, host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    closeGate: () => void (open = false),
    openAfterNextAttempt: (timeoutMs) =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection attempt came to the relay in ${timeoutMs} ms`)), timeoutMs);
        onAttempt = () => {
          clearTimeout(timer);
          onAttempt = undefined;
          open = true;
          resolve(Date.now());
        };
      }),
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

beforeAll(async () => {
  dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-health', store: 'boltdb' });
});
afterAll(async () => {
  await stopDtm(dtm, true).catch(() => undefined);
});

describe('DtmHealthIndicator in a terminus HealthCheckService', () => {
  it.each(['http', 'grpc'] as const)('up over %s with the version and latency; 20 checks leave DTM\'s transaction list as it was', async (protocol) => {
    const { app, url } = await healthApp({ serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, protocol, timeout: 2 });
    try {
      // one transaction so the list is not trivially empty
      const client = app.get(DtmClient);
      await client.newSaga(`health-${protocol}-${Date.now()}`).add('', {}).submitAndWait({ timeout: 10 });
      const before = await allTransactions(dtm.info.serverUrl);
      expect(before.length).toBeGreaterThan(0);
      for (let i = 0; i < 20; i++) {
        const res = await fetch(url);
        expect(res.status).toBe(200);
        const body = (await res.json()) as { status: string; details: { dtm: Record<string, unknown> } };
        expect(body).toMatchObject({ status: 'ok', details: { dtm: { status: 'up', version: 'v1.19.0', protocol, latencyMs: expect.any(Number) } } });
      }
      expect(await allTransactions(dtm.info.serverUrl)).toEqual(before);
    } finally {
      await app.close();
    }
  });

  it("down (503) over http with server_url's credentials (http://user:password@...) nowhere in the answer a health route gives anyone: DTM's port closed, or a gateway answering 502 in front of it", async () => {
    const gateway = createServer((_req, res) => res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway'));
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    try {
      for (const port of [closedPort, (gateway.address() as net.AddressInfo).port]) {
        const { app, url } = await healthApp({ serverUrl: `http://dtm-user:s3cret-pw@127.0.0.1:${port}/api/dtmsvr`, protocol: 'http', timeout: 2 });
        try {
          const res = await fetch(url);
          expect(res.status).toBe(503);
          const text = await res.text();
          expect(text).toContain('"status":"down"');
          expect(text).not.toMatch(/s3cret-pw|dtm-user/);
        } finally {
          await app.close();
        }
      }
    } finally {
      await new Promise((resolve) => gateway.close(resolve));
    }
  });

  it('up (200) with enabled: false when lynx.dtm.enabled is false, and nothing reaches the configured address', async () => {
    let connections = 0;
    const trap = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    const port = (trap.address() as net.AddressInfo).port;
    const { app, url } = await healthApp({ enabled: false, serverUrl: `http://127.0.0.1:${port}/api/dtmsvr`, grpcServer: `127.0.0.1:${port}`, timeout: 1 });
    try {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok', details: { dtm: { status: 'up', enabled: false, protocol: 'http' } } });
      expect(connections).toBe(0);
    } finally {
      await app.close();
      trap.close();
    }
  });

  it.each(['http', 'grpc'] as const)('down (503) over %s within lynx.dtm.timeout when DTM does not answer at all', async (protocol) => {
    // a listener that accepts connections and never answers
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const { app, url } = await healthApp({ serverUrl: `http://127.0.0.1:${port}/api/dtmsvr`, grpcServer: `127.0.0.1:${port}`, protocol, timeout: 1 });
    try {
      const started = Date.now();
      const res = await fetch(url);
      const elapsed = Date.now() - started;
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'error', error: { dtm: { status: 'down', protocol, message: expect.any(String) } } });
      expect(elapsed).toBeGreaterThanOrEqual(900);
      // the 1 s timeout, not the default 10 s (nor none): slack for a loaded CI machine
      expect(elapsed).toBeLessThan(3000);
    } finally {
      await app.close();
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it.each(['http', 'grpc'] as const)('up over %s, and DtmClient.ping() answers within lynx.dtm.timeout (2 s), when DTM answers each of the ping\'s two calls after 1.4 s', async (protocol) => {
    // the two calls run at once: one after the other they would take 2.8 s
    const http = await slowHttp(1400);
    const grpc = await slowGrpcOnce(1400);
    const { app, url } = await healthApp({ serverUrl: http.serverUrl, grpcServer: protocol === 'grpc' ? grpc.grpcServer : dtm.info.grpcAddress, protocol, timeout: 2 });
    try {
      grpc.start();
      const started = Date.now();
      const ping = await app.get(DtmClient).ping();
      const elapsed = Date.now() - started;
      expect(ping).toMatchObject({ version: 'v1.19.0', protocol });
      expect(elapsed).toBeLessThan(2600); // at once: one after the other, 2.8 s at least
      const res = await fetch(url);
      expect(await res.json()).toMatchObject({ status: 'ok', details: { dtm: { status: 'up', version: 'v1.19.0', protocol } } });
    } finally {
      await app.close();
      await http.close();
      await grpc.close();
    }
  });

  it('DtmClient.ping() over grpc (the call of each start-up ping) fails within lynx.dtm.timeout (2 s) when server_url accepts and never answers while DTM\'s gRPC API answers after 1.4 s', async () => {
    // the two calls run at once: one after the other they would take 3.4 s; the bound leaves 1.1 s (a loaded CI machine)
    const silent = await startTrap({ hold: true });
    const grpc = await slowGrpcOnce(1400);
    const { app } = await healthApp({ serverUrl: silent.url, grpcServer: grpc.grpcServer, protocol: 'grpc', timeout: 2 });
    try {
      grpc.start();
      const started = Date.now();
      const error = await app.get(DtmClient).ping().catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect(elapsed).toBeGreaterThanOrEqual(1900);
      expect(elapsed).toBeLessThan(3100);
    } finally {
      await app.close();
      await grpc.close();
      await silent.close();
    }
  });

  it('up over grpc within seconds once DTM is back after an outage of 15 s that health checks saw every second, back just after a connection attempt failed (grpc-js\'s default backoff waits over 6 s for its next one then)', async () => {
    // grpc-js waits 1 s after a channel's first failed connection attempt, then each wait is the last one x1.6, +-20 %
    // (its BackoffTimeout, up to 120 s by default): attempts about 0, 1, 2.6, 5.2, 9.3, 15.8, 26.3 s into an outage.
    // After an attempt 15 s or more in, its next one comes over 6 s later (8 s or more in 99 % of the draws: a
    // simulation of that backoff). DTM's gRPC API reached again just after such an attempt (the relay opens then, DTM
    // started again behind it) is found within about a second by the module's channels (MAX_RECONNECT_BACKOFF_MS in
    // lib/transport/grpc/grpc.transport.ts), over 6 s later with grpc-js's default; a longer outage does not change
    // the module's wait, which does not grow. (DTM back at a random moment of the wait, after an outage of 55 s, was
    // found within 5 s by the default backoff in about 1 case in 5.)
    const runDir = runDirFrom(harness().runDir);
    let own = await startDtm(runDir, { name: 'dtm-health-back', store: 'boltdb' });
    const relay = await gatedRelay(own.info.grpcAddress);
    const { app, url } = await healthApp({ serverUrl: own.info.serverUrl, grpcServer: relay.address, protocol: 'grpc', timeout: 1 });
    try {
      expect((await fetch(url)).status).toBe(200);
      relay.closeGate();
      await stopDtm(own);
      const down = Date.now();
      while (Date.now() - down < 15_000) {
        expect((await fetch(url)).status).toBe(503);
        await sleep(1000);
      }
      own = await startDtmAgain(runDir, own, { name: 'dtm-health-back' });
      expect((await fetch(url)).status).toBe(503); // DTM answers (startDtmAgain waited for it), its gRPC API not yet
      // the channel's next connection attempt fails, and DTM's gRPC API is reachable right after it
      const back = await relay.openAfterNextAttempt(40_000);
      let status = 0;
      while (Date.now() - back < 30_000 && (status = (await fetch(url)).status) !== 200) await sleep(500);
      expect({ status, seconds: Math.round((Date.now() - back) / 1000) }).toEqual({ status: 200, seconds: expect.any(Number) });
      expect(Date.now() - back).toBeLessThan(5000);
      // and the client's gRPC calls work again as soon
      expect(await app.get(DtmClient).generateGid()).toEqual(expect.any(String));
    } finally {
      await app.close();
      await relay.close();
      await stopDtm(own, true).catch(() => undefined);
    }
  }, 120_000);

  it('down (503) over grpc when grpc_server is a gRPC server that is not DTM (it answers UNIMPLEMENTED to every method), while DTM answers on server_url', async () => {
    // another service's gRPC server (here one with no service at all), as a grpc_server copied from the wrong line
    const other = new Server();
    const port = await new Promise<number>((resolve, reject) => other.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const { app, url } = await healthApp({ serverUrl: dtm.info.serverUrl, grpcServer: `127.0.0.1:${port}`, protocol: 'grpc', timeout: 2 });
    try {
      const res = await fetch(url);
      const body = (await res.json()) as { error?: { dtm?: { message?: string } } };
      expect({ status: res.status, body }).toMatchObject({ status: 503, body: { status: 'error', error: { dtm: { status: 'down', protocol: 'grpc' } } } });
      expect(body.error!.dtm!.message).toContain(`127.0.0.1:${port}`);
      expect(body.error!.dtm!.message).toContain('lynx.dtm.grpc_server');
      // and the client's own ping says the same
      await expect(app.get(DtmClient).ping()).rejects.toThrow('lynx.dtm.grpc_server');
    } finally {
      await app.close();
      other.forceShutdown();
    }
  });

  it("down (503) over grpc when grpc_server is DTM's HTTP port (an HTTP/1 server answers there, not gRPC): the message says so and names the gRPC port, for the indicator, ping() and a transaction", async () => {
    const httpPort = new URL(dtm.info.serverUrl).host; // 127.0.0.1:<DTM's HTTP port>, as a grpc_server copied from server_url
    const { app, url } = await healthApp({ serverUrl: dtm.info.serverUrl, grpcServer: httpPort, protocol: 'grpc', timeout: 2 });
    const hint = `something listens at ${httpPort} but does not speak gRPC (HTTP/2): an HTTP/1 server, such as DTM's HTTP port (36789 by default); lynx.dtm.grpc_server must be DTM's gRPC port (36790 by default)`;
    try {
      const res = await fetch(url);
      const body = (await res.json()) as { error?: { dtm?: { message?: string } } };
      expect({ status: res.status, body }).toMatchObject({ status: 503, body: { status: 'error', error: { dtm: { status: 'down', protocol: 'grpc' } } } });
      expect(body.error!.dtm!.message).toContain(hint);
      await expect(app.get(DtmClient).ping()).rejects.toThrow(hint);
      const gid = `grpc-on-http-port-${Date.now()}`;
      await expect(app.get(DtmClient).newSaga(gid).add('http://127.0.0.1:1/a', 'http://127.0.0.1:1/b', {}).submit()).rejects.toThrow(hint);
      expect((await queryTrans(gid, dtm.info.serverUrl)).transaction).toBeNull();
    } finally {
      await app.close();
    }
  });

  it("down (503) over http when server_url is DTM's gRPC port (an HTTP/2-only gRPC server answers there, not HTTP/1): the message says so and names the HTTP port, for the indicator, ping() and a transaction", async () => {
    const grpcPort = dtm.info.grpcAddress; // 127.0.0.1:<DTM's gRPC port>, as a server_url copied from grpc_server
    const { app, url } = await healthApp({ serverUrl: `http://${grpcPort}/api/dtmsvr`, grpcServer: dtm.info.grpcAddress, protocol: 'http', timeout: 2 });
    const hint = `something listens at ${grpcPort} but does not speak HTTP/1: an HTTP/2-only server (gRPC), such as DTM's gRPC port (36790 by default); lynx.dtm.server_url must be DTM's HTTP port (36789 by default)`;
    try {
      const res = await fetch(url);
      const body = (await res.json()) as { error?: { dtm?: { message?: string } } };
      expect({ status: res.status, body }).toMatchObject({ status: 503, body: { status: 'error', error: { dtm: { status: 'down', protocol: 'http' } } } });
      expect(body.error!.dtm!.message).toContain(hint);
      await expect(app.get(DtmClient).ping()).rejects.toThrow(hint);
      const gid = `http-on-grpc-port-${Date.now()}`;
      await expect(app.get(DtmClient).newSaga(gid).add('http://127.0.0.1:1/a', 'http://127.0.0.1:1/b', {}).submit()).rejects.toThrow(hint);
      await expect(app.get(DtmClient).query(gid)).rejects.toThrow(hint);
      expect((await queryTrans(gid, dtm.info.serverUrl)).transaction).toBeNull();
    } finally {
      await app.close();
    }
  });

  it('down (503) over grpc when server_url reaches no DTM although its gRPC API answers: the version is read over HTTP (docs/grpc.md)', async () => {
    const closed = net.createServer();
    const port = await new Promise<number>((resolve) => closed.listen(0, '127.0.0.1', () => resolve((closed.address() as net.AddressInfo).port)));
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const { app, url } = await healthApp({ serverUrl: `http://127.0.0.1:${port}/api/dtmsvr`, grpcServer: dtm.info.grpcAddress, protocol: 'grpc', timeout: 2 });
    try {
      const res = await fetch(url);
      const body = (await res.json()) as { error?: { dtm?: { message?: string } } };
      expect({ status: res.status, body }).toMatchObject({ status: 503, body: { status: 'error', error: { dtm: { status: 'down', protocol: 'grpc' } } } });
      expect(body.error!.dtm!.message).toContain(`127.0.0.1:${port}`);
    } finally {
      await app.close();
    }
  });

  it.each(['http', 'grpc'] as const)('down over %s within the timeout once the DTM server is stopped (it was up before)', async (protocol) => {
    const own = await startDtm(runDirFrom(harness().runDir), { name: `dtm-health-stop-${protocol}`, store: 'boltdb' });
    const { app, url } = await healthApp({ serverUrl: own.info.serverUrl, grpcServer: own.info.grpcAddress, protocol, timeout: 2 });
    try {
      expect((await fetch(url)).status).toBe(200);
      await stopDtm(own);
      const started = Date.now();
      const res = await fetch(url);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'error', error: { dtm: { status: 'down', protocol } } });
      expect(Date.now() - started).toBeLessThan(3500); // the 2 s timeout at most, with slack for a loaded CI machine
    } finally {
      await app.close();
      await stopDtm(own, true).catch(() => undefined);
    }
  });
});

describe("DTM whose store does not answer (its Redis down)", () => {
  it.each(['http', 'grpc'] as const)('down (503) over %s within lynx.dtm.timeout, the message naming the store: DTM answers /api/ping and its version, but can neither take nor read a transaction', async (protocol) => {
    const store = await startStallProxy(harness().redis!.url);
    const through = new URL(store.url);
    const own = await startDtm(runDirFrom(harness().runDir), {
      name: `dtm-health-store-${protocol}`,
      store: 'redis',
      redis: { ...harness().redis!, host: through.hostname, port: Number(through.port), url: store.url },
      redisPrefix: `{health-store-${protocol}-${Date.now()}}`,
    });
    const { app, url } = await healthApp({ serverUrl: own.info.serverUrl, grpcServer: own.info.grpcAddress, protocol, timeout: 2 });
    try {
      expect((await fetch(url)).status).toBe(200);
      await store.close(); // DTM's Redis is gone: every read and write of its store fails
      // what the module meets: DTM cannot read a transaction (nor keep one: dtm-store-stall.spec)
      await expect(app.get(DtmClient).query(`health-store-${protocol}-${Date.now()}`)).rejects.toThrow();
      const started = Date.now();
      const res = await fetch(url);
      const body = (await res.json()) as { error?: { dtm?: { message?: string } } };
      expect({ status: res.status, body }).toMatchObject({ status: 503, body: { status: 'error', error: { dtm: { status: 'down', protocol } } } });
      expect(body.error!.dtm!.message).toContain('answers its ping, but could not read its store');
      expect(Date.now() - started).toBeLessThan(3500); // the 2 s timeout at most, with slack for a loaded CI machine
      await expect(app.get(DtmClient).ping()).rejects.toThrow(/answers its ping, but could not read its store \(a query of a transaction failed: .+\)/);
    } finally {
      await app.close();
      await stopDtm(own, true).catch(() => undefined);
      await store.close().catch(() => undefined);
    }
  }, 60_000);
});
