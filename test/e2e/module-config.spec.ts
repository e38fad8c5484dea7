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
  DtmClient,
  DtmConfigError,
  DtmDisabledError,
  DtmFailureError,
  DtmModule,
  DtmUnavailableError,
  type StoredTransactionOptions,
  type TransactionOptions,
} from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { harness, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-module-'));
let recorder: Recorder;
let fromYaml: DtmTestApp;

beforeAll(async () => {
  recorder = await startRecorder();
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    `lynx:
  dtm:
    server_url: "\${TEST_DTM_URL}"
    retry_interval: 15
    transaction_timeout: 120
    branch_timeout: 7
`,
  );
  process.env.TEST_DTM_URL = harness().dtm.serverUrl;
  fromYaml = await startDtmApp({ configFile: file });
});
afterAll(async () => {
  await fromYaml?.close();
  await recorder?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs one transaction of each mode with `options` and returns what DTM stored for each. */
async function storedOptionsPerMode(client: DtmClient, options?: TransactionOptions): Promise<Record<string, StoredTransactionOptions>> {
  const stored = async (gid: string) => (await client.query(gid))!.options;
  const result: Record<string, StoredTransactionOptions> = {};

  const sagaGid = await client.generateGid();
  await client.newSaga(sagaGid, options).add(recorder.urlFor('/A'), recorder.urlFor('/Ac'), {}).submit();
  result.saga = await stored(sagaGid);

  const msgGid = await client.generateGid();
  await client.newMsg(msgGid, options).add(recorder.urlFor('/B'), {}).prepare(recorder.urlFor('/QueryPrepared'));
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

describe('lynx.dtm settings in what DTM stores', () => {
  it('module defaults from YAML reach every mode: retry_interval, timeout_to_fail, request_timeout', async () => {
    const perMode = await storedOptionsPerMode(fromYaml.client);
    for (const mode of ['saga', 'msg', 'tcc', 'xa']) {
      expect([mode, perMode[mode]]).toEqual([mode, expect.objectContaining({ retryInterval: 15, timeoutToFail: 120, requestTimeout: 7 })]);
    }
  });

  it('per-transaction options override them in every mode', async () => {
    const overrides = { retryInterval: 3, timeoutToFail: 33, requestTimeout: 4, branchHeaders: { 'x-tenant': 'acme' } };
    const perMode = await storedOptionsPerMode(fromYaml.client, overrides);
    for (const mode of ['saga', 'msg', 'tcc', 'xa']) {
      expect([mode, perMode[mode]]).toEqual([mode, expect.objectContaining(overrides)]);
    }
  });

  it('branch_timeout bounds the module\'s own Try calls too, and the transaction rolls back', async () => {
    const app = await startDtmApp({ config: { branchTimeout: 1 } });
    try {
      recorder.handle('/SlowTry', async () => {
        await new Promise((r) => setTimeout(r, 2500));
        return 200;
      });
      const gid = await app.client.generateGid();
      const started = Date.now();
      const run = app.client.tccGlobalTransaction(gid, (tcc) =>
        tcc.callBranch({}, recorder.urlFor('/SlowTry'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')),
      );
      await expect(run).rejects.toBeInstanceOf(DtmUnavailableError);
      expect(Date.now() - started).toBeLessThan(2000);
      const final = await waitForTransStatus(gid, 'failed');
      expect(final.transaction?.request_timeout).toBe(1);
      expect(final.transaction?.rollback_reason).toContain('timeout 1 s');
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
      expect((error as DtmUnavailableError).url).toBe(`http://127.0.0.1:${port}/api/dtmsvr/newGid`);
      expect((error as Error).message).toMatch(/could not reach .*\/newGid .*lynx\.dtm\.server_url.*timeout 1 s/);
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(2500);
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

  it('errors never show credentials in URLs nor the headers sent, also where their cause is printed', async () => {
    const app = await startDtmApp({ config: { serverUrl: 'http://dtm-user:s3cret-pass@127.0.0.1:1/api/dtmsvr' } });
    try {
      const error = await app.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as DtmUnavailableError).url).toBe('http://***@127.0.0.1:1/api/dtmsvr/newGid');
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

  it('ping, query, list and forceStop talk to the real server', async () => {
    const client = fromYaml.client;
    expect((await client.ping()).version).toBe('v1.19.0');
    expect(await client.query('no-such-gid')).toBeNull();

    const gids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const gid = await client.generateGid();
      gids.push(gid);
      await client.newMsg(gid).add(recorder.urlFor('/Listed'), { i }).prepare(recorder.urlFor('/QueryPrepared'));
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
  });
});

describe('module set-up', () => {
  it('enabled: false boots the app; any use of the client throws DtmDisabledError', async () => {
    const app = await startDtmApp({ config: { enabled: false, serverUrl: 'http://127.0.0.1:1/api/dtmsvr' } });
    try {
      expect(app.client.enabled).toBe(false);
      await expect(app.client.generateGid()).rejects.toBeInstanceOf(DtmDisabledError);
      expect(() => app.client.newMsg('g')).toThrow(DtmDisabledError);
      await expect(app.helper.mustGenGid()).rejects.toBeInstanceOf(DtmDisabledError);
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

  it('a bad configuration fails start-up with one DtmConfigError listing every problem', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'lynx:\n  dtm:\n    server_url: "ftp://x"\n    timeout: -5\n    retry_intervall: 3\n');
    const compiling = Test.createTestingModule({ imports: [DtmModule.forRoot({ configFile: file })] }).compile();
    const error = await compiling.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems.map((p) => p.path)).toEqual(['lynx.dtm.server_url', 'lynx.dtm.timeout', 'lynx.dtm.retry_intervall']);
  });
});
