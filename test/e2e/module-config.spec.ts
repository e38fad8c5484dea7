// DtmModule configuration taking effect: what DTM stores equals what was configured, per mode, from
// YAML and from per-transaction overrides; timeouts; enabled: false; forRootAsync; bad config.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import {
  BranchBarrier,
  DtmClient,
  DtmConfigError,
  type DtmProtocol,
  DtmDisabledError,
  DtmFailureError,
  DtmModule,
  DtmUnavailableError,
  DtmUsageError,
  type StoredTransactionOptions,
  type TransactionOptions,
} from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { harness, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-module-'));
let recorder: Recorder;
let fromYaml: DtmTestApp;
/** The same YAML, with inline config selecting the gRPC protocol. */
let fromYamlGrpc: DtmTestApp;

beforeAll(async () => {
  recorder = await startRecorder();
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    `lynx:
  dtm:
    server_url: "\${TEST_DTM_URL}"
    grpc_server: "\${TEST_DTM_GRPC}"
    retry_interval: 15
    transaction_timeout: 120
    saga_timeout: 240
    branch_timeout: 7
`,
  );
  process.env.TEST_DTM_URL = harness().dtm.serverUrl;
  process.env.TEST_DTM_GRPC = harness().dtm.grpcAddress;
  fromYaml = await startDtmApp({ configFile: file });
  fromYamlGrpc = await startDtmApp({ configFile: file, config: { protocol: 'grpc' } });
});
afterAll(async () => {
  await fromYaml?.close();
  await fromYamlGrpc?.close();
  await recorder?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The app of the YAML file, talking `protocol` to DTM, and the recorder's targets of that protocol. */
function appOf(protocol: DtmProtocol) {
  return protocol === 'http'
    ? { client: fromYaml.client, target: (path: string) => recorder.urlFor(path), protocol }
    : { client: fromYamlGrpc.client, target: (path: string) => recorder.grpcTargetFor(path), protocol };
}

/** Runs one transaction of each mode with `options` and returns what DTM stored for each (and the protocol it recorded). */
async function storedOptionsPerMode(protocol: DtmProtocol, options?: TransactionOptions): Promise<Record<string, StoredTransactionOptions & { protocol: string }>> {
  const { client, target } = appOf(protocol);
  const stored = async (gid: string) => {
    const record = (await client.query(gid))!;
    return { ...record.options, protocol: record.protocol };
  };
  const result: Record<string, StoredTransactionOptions & { protocol: string }> = {};
  const empty = Buffer.from('{}');

  const sagaGid = await client.generateGid();
  await client.newSaga(sagaGid, options).add(target('/A'), target('/Ac'), empty).submit();
  result.saga = await stored(sagaGid);

  const msgGid = await client.generateGid();
  await client.newMsg(msgGid, options).add(target('/B'), empty).prepare(target('/QueryPrepared'));
  result.msg = await stored(msgGid);
  await client.forceStop(msgGid);

  // TCC and XA: the options must be stored by prepare, before any branch runs
  const tccGid = await client.generateGid();
  await client.tccGlobalTransaction(tccGid, async () => {
    result.tcc = await stored(tccGid);
  }, options);
  const xaGid = await client.generateGid();
  await client.xaGlobalTransaction(xaGid, async () => {
    result.xa = await stored(xaGid);
  }, options);
  return result;
}

describe.each(PROTOCOLS)('lynx.dtm settings in what DTM stores, over %s', (protocol) => {
  it('module defaults from YAML reach every mode: retry_interval, timeout_to_fail (saga_timeout for sagas), branch_timeout (DTM request_timeout)', async () => {
    const perMode = await storedOptionsPerMode(protocol);
    for (const mode of ['saga', 'msg', 'tcc', 'xa']) {
      const timeoutToFail = mode === 'saga' ? 240 : 120;
      expect([mode, perMode[mode]]).toEqual([mode, expect.objectContaining({ retryInterval: 15, timeoutToFail, branchTimeout: 7, protocol })]);
    }
  });

  it('per-transaction options override them in every mode', async () => {
    const overrides: TransactionOptions = { retryInterval: 3, timeoutToFail: 33, branchTimeout: 4, branchHeaders: { 'x-tenant': 'acme' } };
    const perMode = await storedOptionsPerMode(protocol, overrides);
    for (const mode of ['saga', 'msg', 'tcc', 'xa']) {
      expect([mode, perMode[mode]]).toEqual([mode, expect.objectContaining(overrides)]);
    }
  });

  it('a per-transaction protocol overrides lynx.dtm.protocol', async () => {
    const other: DtmProtocol = protocol === 'http' ? 'grpc' : 'http';
    const { client } = appOf(protocol);
    const gid = await client.generateGid();
    await client.newSaga(gid, { protocol: other }).add(appOf(other).target('/A'), Buffer.from('{}')).submit();
    expect((await client.query(gid))?.protocol).toBe(other);
  });

  it('branch_timeout bounds the module\'s own Try calls too, and the transaction rolls back', async () => {
    const app = await startDtmApp({ config: { branchTimeout: 1 } });
    try {
      // answered after 6 s: a Try not cut at the branch timeout takes that long, one cut at it about 1 s
      // and the TCC's own calls to DTM (prepare, registerBranch, abort), which the bound leaves time for (a busy shared DTM, a loaded CI machine)
      recorder.handle('/SlowTry', async () => {
        await new Promise((r) => setTimeout(r, 6000));
        return 200;
      });
      const gid = await app.client.generateGid();
      const started = Date.now();
      const run = app.client.tccGlobalTransaction(gid, (tcc) =>
        tcc.callBranch({}, recorder.urlFor('/SlowTry'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')),
      );
      await expect(run).rejects.toBeInstanceOf(DtmUnavailableError);
      expect(Date.now() - started).toBeLessThan(4500);
      const final = await waitForTransStatus(gid, 'failed');
      expect(final.transaction?.request_timeout).toBe(1);
      expect(final.transaction?.rollback_reason).toContain('no complete answer from the branch ' + recorder.urlFor('/SlowTry') + ' within its timeout (1 s)');
    } finally {
      await app.close();
    }
  });
});

describe('reaching the DTM server', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    silent = createServer((socket) => sockets.push(socket)); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  it('a server that does not answer gives DtmUnavailableError within the timeout, naming the URL', async () => {
    const port = (silent.address() as { port: number }).port;
    const app = await startDtmApp({ config: { serverUrl: `http://127.0.0.1:${port}/api/dtmsvr`, timeout: 1 } });
    try {
      const started = Date.now();
      const error = await app.client.generateGid().catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as DtmUnavailableError).endpoint).toBe(`http://127.0.0.1:${port}/api/dtmsvr/newGid`);
      expect((error as Error).message).toMatch(/^no complete answer from .*\/newGid within the timeout \(1 s\), on a connection it accepted: .*raise lynx\.dtm\.timeout$/);
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(3000); // the 1 s timeout given, not the default 10 s: slack for a loaded CI machine
    } finally {
      await app.close();
    }
  });

  it('a closed port gives DtmUnavailableError at once', async () => {
    const app = await startDtmApp({ config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr' } });
    try {
      await expect(app.client.newSaga('g-closed').add('http://x/a', 'http://x/b', {}).submit()).rejects.toThrow(/could not reach .*ECONNREFUSED/);
    } finally {
      await app.close();
    }
  });

  it('gRPC: a server that does not answer gives DtmUnavailableError within the timeout, naming the endpoint', async () => {
    const port = (silent.address() as { port: number }).port;
    const app = await startDtmApp({ config: { protocol: 'grpc', grpcServer: `127.0.0.1:${port}`, timeout: 1 } });
    try {
      const started = Date.now();
      const error = await app.client.generateGid().catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect(error).toMatchObject({ protocol: 'grpc', endpoint: `127.0.0.1:${port}/dtmgimp.Dtm/NewGid`, status: 4 });
      expect((error as Error).message).toMatch(/could not reach 127\.0\.0\.1:\d+\/dtmgimp\.Dtm\/NewGid .*timeout 1 s/);
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(3000); // the 1 s timeout given, not the default 10 s: slack for a loaded CI machine
    } finally {
      await app.close();
    }
  });

  it('gRPC: a closed port gives DtmUnavailableError at once, and the saga is not sent', async () => {
    const app = await startDtmApp({ config: { protocol: 'grpc', grpcServer: '127.0.0.1:1', timeout: 5 } });
    try {
      const started = Date.now();
      const error = await app.client.newSaga('g-closed-grpc').add('127.0.0.1:1/a.B/C', new Uint8Array(0)).submit().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect(error).toMatchObject({ protocol: 'grpc', status: 14, endpoint: '127.0.0.1:1/dtmgimp.Dtm/Submit' });
      expect(Date.now() - started).toBeLessThan(4000); // at once: not the 5 s timeout
    } finally {
      await app.close();
    }
  });

  it('errors never show credentials in URLs nor the headers sent, also where their cause is printed', async () => {
    const app = await startDtmApp({ config: { serverUrl: 'http://dtm-user:s3cret-pass@127.0.0.1:1/api/dtmsvr' } });
    try {
      const error = await app.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as DtmUnavailableError).endpoint).toBe('http://***@127.0.0.1:1/api/dtmsvr/newGid');
      expect((error as Error & { cause: { code: string } }).cause.code).toBe('ECONNREFUSED');
      expect(inspect(error, { depth: 20 })).not.toContain('s3cret-pass');
    } finally {
      await app.close();
    }

    const gid = await fromYaml.client.generateGid();
    const tryError = await fromYaml.client
      .tccGlobalTransaction(gid, async (tcc) => tcc.callBranch({}, 'http://u:branch-pass@127.0.0.1:1/try', recorder.urlFor('/c'), recorder.urlFor('/x')), {
        branchHeaders: { authorization: 'Bearer top-secret-token' },
      })
      .catch((e: unknown) => e);
    expect(tryError).toBeInstanceOf(DtmUnavailableError);
    const printed = inspect(tryError, { depth: 20 });
    expect(printed).toContain('could not reach the branch http://***@127.0.0.1:1/try');
    expect(printed).not.toContain('top-secret-token');
    expect(printed).not.toContain('branch-pass');

    const bad = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: 'ftp://admin:cfg-pass@dtm:36789' } })] })
      .compile()
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(DtmConfigError);
    expect(inspect(bad, { depth: 20 })).not.toContain('cfg-pass');
  });

  it.each(PROTOCOLS)('ping, query, list and forceStop talk to the real server (client on %s)', async (protocol) => {
    const { client, target } = appOf(protocol);
    expect(await client.ping()).toEqual({ version: 'v1.19.0', protocol, latencyMs: expect.any(Number) });
    expect(await client.query('no-such-gid')).toBeNull();
    // a wait for a gid DTM does not hold (never made, or gone from DTM's Redis store): a DtmUsageError at once, not a wait until the timeout
    const waited = await client.waitForFinal('no-such-gid', { timeout: 30 }).catch((e: unknown) => e);
    expect(waited).toBeInstanceOf(DtmUsageError);
    expect((waited as Error).message).toBe('DTM has no transaction no-such-gid');

    const gids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const gid = await client.generateGid();
      gids.push(gid);
      await client.newMsg(gid).add(target('/Listed'), Buffer.from(`{"i":${i}}`)).prepare(target('/QueryPrepared'));
    }
    const first = await client.list({ limit: 1, transType: 'msg', status: 'prepared' });
    expect(first.transactions).toHaveLength(1);
    expect(first.nextPosition).toBeDefined();
    const second = await client.list({ limit: 1, transType: 'msg', status: 'prepared', position: first.nextPosition });
    expect(second.transactions[0].gid).not.toBe(first.transactions[0].gid);
    expect((await client.list({ gid: gids[1] })).transactions.map((t) => t.gid)).toEqual([gids[1]]);

    for (const gid of gids) await client.forceStop(gid);
    expect((await client.query(gids[0]))?.status).toBe('failed');
    await expect(client.forceStop(gids[0])).rejects.toBeInstanceOf(DtmFailureError);
    // a gid DTM does not hold: DTM answers 500 "no TransGlobal with gid"; the module says so as a refusal
    const unknown = await client.forceStop('no-such-gid').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(DtmFailureError);
    expect((unknown as DtmFailureError).message).toBe('DTM refused forceStop of no-such-gid: DTM has no transaction no-such-gid');
    expect((unknown as DtmFailureError).status).toBe(500);
  });
});

describe('module set-up', () => {
  it('enabled: false boots the app; any use of the client throws DtmDisabledError, but barrier(), a branch\'s own barrier, which needs no DTM', async () => {
    const app = await startDtmApp({ config: { enabled: false, serverUrl: 'http://127.0.0.1:1/api/dtmsvr' } });
    try {
      expect(app.client.enabled).toBe(false);
      await expect(app.client.generateGid()).rejects.toBeInstanceOf(DtmDisabledError);
      expect(() => app.client.newMsg('g')).toThrow(DtmDisabledError);
      await expect(app.helper.mustGenGid()).rejects.toBeInstanceOf(DtmDisabledError);
      expect(app.client.barrier({ gid: 'g-disabled', transType: 'saga', branchId: '01', op: 'action', headers: {} })).toBeInstanceOf(BranchBarrier);
    } finally {
      await app.close();
    }
  });

  it('forRootAsync works with @nestjs/config\'s ConfigService, and isGlobal exports everywhere', async () => {
    @Injectable()
    class Payments {
      constructor(readonly dtm: DtmClient) {}
    }
    @Module({ providers: [Payments], exports: [Payments] })
    class PaymentsModule {}

    const module = await Test.createTestingModule({
      imports: [
        ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ dtm: { serverUrl: harness().dtm.serverUrl, retryInterval: 21 } })] }),
        DtmModule.forRootAsync({
          isGlobal: true,
          imports: [ConfigModule],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => ({ config: config.get('dtm') }),
        }),
        PaymentsModule,
      ],
    }).compile();
    await module.init();
    try {
      const client = module.get(Payments).dtm;
      expect(client.config.retryInterval).toBe(21);
      const gid = await client.generateGid();
      await client.newSaga(gid).add(recorder.urlFor('/A'), recorder.urlFor('/Ac'), {}).submit();
      expect((await client.query(gid))?.options.retryInterval).toBe(21);
    } finally {
      await module.close();
    }
  });

  it.each(['useClass', 'useExisting'] as const)('forRootAsync with %s: the options from a provider\'s create() (reading ConfigService) take effect in what DTM stores', async (how) => {
    @Injectable()
    class DtmOptionsFactory {
      constructor(private readonly config: ConfigService) {}
      create() {
        return { config: { serverUrl: this.config.get<string>('DTM_URL'), retryInterval: 23 } };
      }
    }
    @Module({ imports: [ConfigModule], providers: [DtmOptionsFactory], exports: [DtmOptionsFactory] })
    class OptionsModule {}
    const module = await Test.createTestingModule({
      imports: [
        ConfigModule.forRoot({ ignoreEnvFile: true, isGlobal: true, load: [() => ({ DTM_URL: harness().dtm.serverUrl })] }),
        how === 'useClass' ? DtmModule.forRootAsync({ useClass: DtmOptionsFactory }) : DtmModule.forRootAsync({ imports: [OptionsModule], useExisting: DtmOptionsFactory }),
      ],
    }).compile();
    await module.init();
    try {
      const client = module.get(DtmClient);
      expect(client.config).toMatchObject({ serverUrl: harness().dtm.serverUrl, retryInterval: 23 });
      const gid = await client.generateGid();
      await client.newSaga(gid).add(recorder.urlFor('/A'), recorder.urlFor('/Ac'), {}).submit();
      expect((await client.query(gid))?.options.retryInterval).toBe(23);
    } finally {
      await module.close();
    }
  });

  it.each(['useClass', 'useExisting'] as const)('forRootAsync with %s whose provider has no create() (plain JavaScript; createDtmOptions() as other modules name it) fails start-up with a DtmConfigError at options.useClass / options.useExisting naming the method to add, not Nest\'s TypeError', async (how) => {
    class DtmOptionsFactory {
      createDtmOptions() {
        return { config: { serverUrl: harness().dtm.serverUrl } };
      }
    }
    @Module({ providers: [DtmOptionsFactory], exports: [DtmOptionsFactory] })
    class OptionsModule {}
    const async = (how === 'useClass' ? { useClass: DtmOptionsFactory } : { imports: [OptionsModule], useExisting: DtmOptionsFactory }) as never;
    const error = await Test.createTestingModule({ imports: [DtmModule.forRootAsync(async)] })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems).toEqual([
      { path: `options.${how}`, message: 'DtmOptionsFactory has no method create(), which DtmModule.forRootAsync calls for the options (it has createDtmOptions()); name the method create()' },
    ]);
  });

  it('a forRootAsync factory that returns nothing (a block body without return) fails start-up with a DtmConfigError at path options saying so, not a TypeError', async () => {
    const compiling = Test.createTestingModule({
      imports: [
        DtmModule.forRootAsync({
          useFactory: () => {
            void { configFile: 'config.yaml' }; // the options it meant to return
          },
        } as never),
      ],
    }).compile();
    const error = await compiling.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems).toEqual([{ path: 'options', message: expect.stringMatching(/^is undefined: the useFactory of DtmModule\.forRootAsync returned nothing .*needs `return`.*return the module's options/) }]);
    const fromNull = await Test.createTestingModule({ imports: [DtmModule.forRootAsync({ useFactory: () => null as never })] })
      .compile()
      .catch((e: unknown) => e);
    expect((fromNull as DtmConfigError).problems).toEqual([{ path: 'options', message: expect.stringMatching(/^must be the module's options object.*got null$/) }]);
  });

  it('options the module does not know (a lynx.dtm key beside config, isGlobal returned by the factory, a typo) fail start-up with a DtmConfigError naming where each goes, not silently the defaults', async () => {
    const error = await Test.createTestingModule({
      imports: [
        DtmModule.forRootAsync({
          useFactory: () => ({ barrierConnections: {}, serverUrl: 'http://dtm:36789/api/dtmsvr', isGlobal: true, configfile: 'config.yaml' }),
        }),
      ],
    })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems).toEqual([
      { path: 'options.serverUrl', message: expect.stringContaining('a lynx.dtm setting: give it inside config ({ config: { serverUrl: ... } }) or in the YAML section (server_url)') },
      { path: 'options.isGlobal', message: expect.stringContaining('goes beside useFactory, not in what it returns: DtmModule.forRootAsync({ isGlobal: true, useFactory })') },
      { path: 'options.configfile', message: expect.stringContaining('unknown option; did you mean "configFile"?') },
    ]);
    const fromForRoot = await Test.createTestingModule({ imports: [DtmModule.forRoot({ timeout: 3 } as never)] })
      .compile()
      .catch((e: unknown) => e);
    expect((fromForRoot as DtmConfigError).problems.map((p) => p.path)).toEqual(['options.timeout']);
  });

  it('instrumentation options the module does not know or cannot read (a typo, a string "false" from the environment, hooks that are no mapping) fail start-up with a DtmConfigError at options.instrumentation.<key>, not silently ignored', async () => {
    const error = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, timeout: -1 }, instrumentation: { debugLog: true, openTelemetry: 'false', hooks: () => undefined } } as never)],
    })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems).toEqual([
      { path: 'options.instrumentation.debugLog', message: 'unknown instrumentation option; did you mean "debugLogs"? (the options: hooks, openTelemetry, debugLogs)' },
      { path: 'options.instrumentation.openTelemetry', message: 'must be true or false, got string false' },
      { path: 'options.instrumentation.hooks', message: "must be a mapping of event names to listeners, such as { 'branch.call': (e) => ... }, got a function" },
      { path: 'config.timeout', message: expect.stringContaining('must be a positive number of seconds') },
    ]);
    const notObject = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl }, instrumentation: true } as never)] })
      .compile()
      .catch((e: unknown) => e);
    expect((notObject as DtmConfigError).problems).toEqual([{ path: 'options.instrumentation', message: 'must be a mapping such as { debugLogs: true }, got boolean true' }]);
    // the known options, well typed, still start (and an undefined one is as if not given)
    const app = await startDtmApp({ instrumentation: { debugLogs: false, openTelemetry: undefined, hooks: {} } });
    await app.close();
  });

  it('an option the module does not know beside a bad lynx.dtm section: one DtmConfigError lists both, not one start-up each', async () => {
    const file = join(dir, 'bad-beside-unknown.yaml');
    writeFileSync(file, 'lynx:\n  dtm:\n    timeout: -5\n');
    const error = await Test.createTestingModule({ imports: [DtmModule.forRoot({ configFile: file, config: { branchTimeout: 0 }, serverUrl: 'http://dtm:36789/api/dtmsvr' } as never)] })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems.map((p) => p.path)).toEqual(['options.serverUrl', 'lynx.dtm.timeout', 'config.branchTimeout']);
    expect((error as DtmConfigError).message).toMatch(/^Invalid DTM configuration \(options \+ file .*bad-beside-unknown\.yaml \+ inline config\), 3 problems:/);
  });

  it('a grpcProtos file that does not load beside a bad lynx.dtm section: one DtmConfigError lists both', async () => {
    const file = join(dir, 'bad-beside-protos.yaml');
    writeFileSync(file, 'lynx:\n  dtm:\n    timeout: -5\n');
    const error = await Test.createTestingModule({ imports: [DtmModule.forRoot({ configFile: file, grpcProtos: { protoPath: join(dir, 'no-such.proto') } })] })
      .compile()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems.map((p) => p.path)).toEqual(['lynx.dtm.timeout', 'grpcProtos.protoPath']);
  });

  it('a bad configuration fails start-up with one DtmConfigError listing every problem', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'lynx:\n  dtm:\n    server_url: "ftp://x"\n    timeout: -5\n    retry_intervall: 3\n');
    const compiling = Test.createTestingModule({ imports: [DtmModule.forRoot({ configFile: file })] }).compile();
    const error = await compiling.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems.map((p) => p.path)).toEqual(['lynx.dtm.server_url', 'lynx.dtm.timeout', 'lynx.dtm.retry_intervall']);
  });
});
