// The published package, as a user gets it: `npm pack` of the dist/ that scripts/run-jest.mjs built
// (--ignore-scripts: prepack's rebuild would pull dist/ away from tests running in parallel),
// installed into a fresh project with its peers, then imported from an ES module and required from
// a CommonJS module (one CommonJS implementation behind both).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

const root = resolve(import.meta.dirname, '..', '..');
let work: string;
let tarball: string;
let packedFiles: string[];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nestjs-dtm-pack-'));
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }),
  ) as { filename: string; files: { path: string }[] }[];
  tarball = join(work, packed[0].filename);
  packedFiles = packed[0].files.map((f) => f.path);

  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  // peers as a Nest 12 app has them; --prefer-offline reuses what `npm ci` put in the npm cache. Bounded: execFileSync
  // blocks the worker, so jest's hook timeout cannot end an npm that hangs on the registry (it held a CI run to its cap)
  execFileSync(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, '@nestjs/common@^12', '@nestjs/core@^12', 'reflect-metadata', 'rxjs'],
    { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], timeout: 150_000 },
  );
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `code` with node in the consumer project `app` as file `name`; returns what it printed. */
function runInConsumer(name: string, code: string, app = 'app'): string {
  const file = join(work, app, name);
  writeFileSync(file, code);
  return execFileSync(process.execPath, [file], { cwd: join(work, app), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

describe('the packed tarball', () => {
  it('holds the CommonJS build, its ES module entries, the types of both, the sources its maps point at, and no tests', () => {
    expect(packedFiles).toEqual(
      expect.arrayContaining([
        'package.json', 'README.md', 'dist/cjs/package.json',
        'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/esm/index.mjs', 'dist/esm/index.d.mts',
        'dist/cjs/testing/index.js', 'dist/cjs/testing/index.d.ts', 'dist/esm/testing.mjs', 'dist/esm/testing.d.mts',
        'dist/dtm-server/go.mod', 'dist/dtm-server/go.sum', 'lib/index.ts', 'lib/testing/index.ts',
      ]),
    );
    expect(packedFiles.filter((f) => !/^(dist|sql|protos|lib)\//.test(f) && !['package.json', 'README.md', 'LICENSE'].includes(f))).toEqual([]);
    expect(packedFiles).toEqual(expect.arrayContaining(['sql/barrier.postgres.sql', 'sql/barrier.mysql.sql', 'protos/workflow.proto']));
    expect(packedFiles.some((f) => /\.spec\.(js|ts)$/.test(f) || f.startsWith('dist/test') || f.startsWith('test/'))).toBe(false);
    expect(packedFiles.filter((f) => f.startsWith('lib/') && !f.endsWith('.ts'))).toEqual([]);
    expect(readdirSync(join(work, 'app', 'node_modules', 'nestjs-dtm', 'dist', 'cjs'))).toContain('index.d.ts');
  });

  it('source maps (code and declarations) point at sources inside the package, and a stack trace names them', () => {
    const maps = packedFiles.filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(100);
    const installed = join(work, 'app', 'node_modules', 'nestjs-dtm');
    const unresolved = maps.flatMap((map) => {
      const { sources } = JSON.parse(readFileSync(join(installed, map), 'utf8')) as { sources: string[] };
      return sources.map((s) => join(dirname(join(installed, map)), s)).filter((s) => !s.startsWith(`${installed}/lib/`) || !existsSync(s)).map((s) => `${map}: ${s}`);
    });
    expect(unresolved).toEqual([]);
    const out = execFileSync(
      process.execPath,
      ['--enable-source-maps', '-e', `try { require('nestjs-dtm').resolveDtmConfig({ config: { timeout: -1 } }) } catch (e) { console.log(e.stack.split('\\n').find((l) => l.includes('nestjs-dtm'))) }`],
      { cwd: join(work, 'app'), encoding: 'utf8' },
    );
    const file = /\((\/[^:]+):\d+:\d+\)/.exec(out)?.[1];
    expect(file).toBe(join(installed, 'lib', 'config', 'resolve-dtm-config.ts'));
    expect(existsSync(file!)).toBe(true);
  });

  it('loaded by import and by require in one process, it is one implementation: the same classes and module state', () => {
    const out = runInConsumer(
      'both.mjs',
      `import 'reflect-metadata';
       import { createRequire } from 'node:module';
       import * as esm from 'nestjs-dtm';
       import * as esmTesting from 'nestjs-dtm/testing';
       const require = createRequire(import.meta.url);
       const cjs = require('nestjs-dtm');
       const cjsTesting = require('nestjs-dtm/testing');
       console.log(JSON.stringify({
         module: esm.DtmModule === cjs.DtmModule, client: esm.DtmClient === cjs.DtmClient, error: esm.DtmError === cjs.DtmError,
         testing: esmTesting.startDtmServer === cjsTesting.startDtmServer,
         names: Object.keys(esm).filter((k) => k !== 'default').sort().join() === Object.keys(cjs).sort().join(),
         errorAcross: new cjsTesting.DtmServerNotFoundError(['x'], 'y') instanceof esm.DtmUsageError,
       }));`,
    );
    expect(JSON.parse(out)).toEqual({ module: true, client: true, error: true, testing: true, names: true, errorAcross: true });
  });

  it('is importable from an ES module, and its module boots in a Nest app', () => {
    const out = runInConsumer(
      'check.mjs',
      `import 'reflect-metadata';
       import { Module } from '@nestjs/common';
       import { NestFactory } from '@nestjs/core';
       import { DtmClient, DtmError, DtmModule, TransactionHelper } from 'nestjs-dtm';
       class AppModule {}
       Module({ imports: [DtmModule.forRoot({ config: { serverUrl: 'http://dtm.example:36789/api/dtmsvr', timeout: 3 } })] })(AppModule);
       const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
       const client = app.get(DtmClient);
       const e = new DtmError('boom', { gid: 'g1', status: 409 });
       console.log(JSON.stringify({
         serverUrl: client.config.serverUrl, timeout: client.config.timeout,
         helper: app.get(TransactionHelper) instanceof TransactionHelper,
         name: e.name, isError: e instanceof Error, gid: e.gid, status: e.status,
       }));
       await app.close();`,
    );
    expect(JSON.parse(out)).toEqual({
      serverUrl: 'http://dtm.example:36789/api/dtmsvr',
      timeout: 3,
      helper: true,
      name: 'DtmError',
      isError: true,
      gid: 'g1',
      status: 409,
    });
  });

  it('runs without @opentelemetry/api installed (an optional peer): hooks still get every call to DTM, its failure included', () => {
    const out = runInConsumer(
      'no-otel.mjs',
      `import 'reflect-metadata';
       import { createRequire } from 'node:module';
       import { Module } from '@nestjs/common';
       import { NestFactory } from '@nestjs/core';
       import { DtmClient, DtmModule } from 'nestjs-dtm';
       let otelInstalled = true;
       try { createRequire(import.meta.url).resolve('@opentelemetry/api'); } catch { otelInstalled = false; }
       const calls = [];
       class AppModule {}
       Module({ imports: [DtmModule.forRoot({ config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr', timeout: 3 }, instrumentation: { hooks: { 'dtm.call': (e) => calls.push(e.operation + ' ' + e.outcome) } } })] })(AppModule);
       const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
       const error = await app.get(DtmClient).generateGid().then(() => 'none', (e) => e.name);
       console.log(JSON.stringify({ otelInstalled, calls, error }));
       await app.close();`,
    );
    expect(JSON.parse(out)).toEqual({ otelInstalled: false, calls: ['newGid error'], error: 'DtmUnavailableError' });
  });

  it('errors keep instanceof across two loaded copies of the package; gRPC without its libraries is a usage error naming them', () => {
    execFileSync('cp', ['-r', join(work, 'app', 'node_modules', 'nestjs-dtm'), join(work, 'app', 'node_modules', 'nestjs-dtm-copy')]);
    const out = runInConsumer(
      'copies.mjs',
      `import 'reflect-metadata';
       import * as a from 'nestjs-dtm';
       import * as b from 'nestjs-dtm-copy';
       const failure = new b.DtmFailureError('refused');
       const registry = new b.DtmBranchRegistryError(['p']);
       const grpc = await new a.DtmClient(a.resolveDtmConfig({ config: { protocol: 'grpc' } }, {})).generateGid().catch((e) => e);
       const { existsSync } = await import('node:fs');
       console.log(JSON.stringify({
         workflowProto: existsSync(a.DTM_WORKFLOW_PROTO) && a.DTM_WORKFLOW_PROTO.endsWith('node_modules/nestjs-dtm/protos/workflow.proto'),
         twoCopies: a.DtmFailureError !== b.DtmFailureError,
         failure: failure instanceof a.DtmFailureError, base: failure instanceof a.DtmError, error: failure instanceof Error,
         notOngoing: failure instanceof a.DtmOngoingError, registryIsUsage: registry instanceof a.DtmUsageError,
         plainError: new Error('x') instanceof a.DtmError, notAnError: ({ name: 'DtmError' }) instanceof a.DtmError,
         grpc: [grpc instanceof b.DtmUsageError, grpc.message],
       }));`,
    );
    expect(JSON.parse(out)).toEqual({
      workflowProto: true,
      twoCopies: true,
      failure: true,
      base: true,
      error: true,
      notOngoing: false,
      registryIsUsage: true,
      plainError: false,
      notAnError: false,
      grpc: [true, expect.stringContaining('@grpc/grpc-js is not installed, and the gRPC protocol needs it: npm install @grpc/grpc-js @grpc/proto-loader')],
    });
  });

  it('protocol: grpc (or grpcProtos) without the gRPC libraries installed fails start-up with a DtmConfigError at its path saying what to install; enabled: false or http boot', () => {
    const out = runInConsumer(
      'grpc-missing.mjs',
      `import 'reflect-metadata';
       import { Module } from '@nestjs/common';
       import { NestFactory } from '@nestjs/core';
       import { DtmConfigError, DtmModule } from 'nestjs-dtm';
       const { writeFileSync } = await import('node:fs');
       writeFileSync('grpc.yaml', 'lynx:\\n  dtm:\\n    protocol: grpc\\n');
       const start = async (options) => {
         class AppModule {}
         Module({ imports: [DtmModule.forRoot(options)] })(AppModule);
         try {
           const app = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
           await app.close();
           return 'started';
         } catch (e) {
           return [e instanceof DtmConfigError, e.problems];
         }
       };
       console.log(JSON.stringify({
         inline: await start({ config: { protocol: 'grpc' } }),
         file: await start({ configFile: 'grpc.yaml' }),
         overridden: await start({ configFile: 'grpc.yaml', config: { protocol: 'http' } }),
         disabled: await start({ config: { protocol: 'grpc', enabled: false } }),
         protos: await start({ config: { protocol: 'http' }, grpcProtos: { protoPath: 'any.proto' } }),
       }));`,
    );
    const message = expect.stringContaining('@grpc/grpc-js is not installed, and the gRPC protocol needs it: npm install @grpc/grpc-js @grpc/proto-loader');
    const problem = (path: string) => [true, [{ path, message }]];
    expect(JSON.parse(out)).toEqual({
      inline: problem('config.protocol'),
      file: problem('lynx.dtm.protocol'),
      overridden: 'started',
      disabled: 'started',
      // the protos of gRPC branches need the libraries too, whatever the protocol to DTM
      protos: problem('grpcProtos'),
    });
  });

  it('is requirable from a CommonJS module (its CommonJS build; Nest 12 itself through require(esm)), DI included', () => {
    const out = runInConsumer(
      'check.cjs',
      `require('reflect-metadata');
       const { Module } = require('@nestjs/common');
       const { NestFactory } = require('@nestjs/core');
       const { DtmClient, DtmModule, DtmConfigError } = require('nestjs-dtm');
       class AppModule {}
       Module({ imports: [DtmModule.forRoot({ config: { retryInterval: 12 } })] })(AppModule);
       NestFactory.createApplicationContext(AppModule, { logger: false }).then(async (app) => {
         const client = app.get(DtmClient);
         let configError;
         try { require('nestjs-dtm').resolveDtmConfig({ config: { timeout: -1 } }); } catch (e) { configError = e; }
         console.log(JSON.stringify({ retryInterval: client.config.retryInterval, typed: configError instanceof DtmConfigError }));
         await app.close();
       });`,
    );
    expect(JSON.parse(out)).toEqual({ retryInterval: 12, typed: true });
  });

  it("startDtmServer() with no binary found builds the DTM server with Go from the Go module the package ships (found from dist/cjs, whose package.json only sets the type), as docs/testing.md says", () => {
    const cache = mkdtempSync(join(tmpdir(), 'nestjs-dtm-cache-'));
    try {
      const file = join(work, 'app', 'build-dtm.cjs');
      writeFileSync(
        file,
        `const { startDtmServer } = require('nestjs-dtm/testing');
         startDtmServer().then(
           async (dtm) => { console.log(JSON.stringify({ from: dtm.binary.from, path: dtm.binary.path, version: dtm.version })); await dtm.stop(); },
           (e) => console.log(JSON.stringify({ error: e.message })),
         );`,
      );
      // a cache of its own: nothing found there, nor in DTM_BINARY or on PATH, so the first start builds it; Go's own build
      // cache (under XDG_CACHE_HOME unless GOCACHE says otherwise) stays where it was, which keeps the build short
      const env = { ...process.env, XDG_CACHE_HOME: cache, DTM_BINARY: '', GOCACHE: execFileSync('go', ['env', 'GOCACHE'], { encoding: 'utf8' }).trim() };
      const out = execFileSync(process.execPath, [file], { cwd: join(work, 'app'), env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 170_000 });
      expect(JSON.parse(out)).toEqual({ from: 'built', path: join(cache, 'nestjs-dtm', 'dtm-v1.19.0', 'dtm'), version: 'v1.19.0' });
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }, 180_000);

  it("a DTM server from startDtmServer() never stopped (a test hook that timed out while it started) neither keeps the process alive nor outlives it", async () => {
    const file = join(work, 'app', 'leak-dtm.cjs');
    writeFileSync(file, `require('nestjs-dtm/testing').startDtmServer().then((dtm) => console.log(dtm.httpUrl));`);
    const out = execFileSync(process.execPath, [file], { cwd: join(work, 'app'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    const url = out.trim();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const answer = await fetch(`${url}/api/ping`).then(
      (r) => `HTTP ${r.status}`,
      () => 'nothing listens',
    );
    expect(answer).toBe('nothing listens');
  }, 90_000);

  it('boots in a Nest 11 app too (peer range ^11 || ^12): DtmModule, a decorated branch route, the client', () => {
    const app = join(work, 'nest11');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'nest11-consumer', version: '1.0.0', private: true }));
    execFileSync(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, '@nestjs/common@^11', '@nestjs/core@^11', '@nestjs/platform-express@^11', 'reflect-metadata', 'rxjs'],
      { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], timeout: 150_000 }, // bounded: see the install in beforeAll
    );
    const out = runInConsumer(
      'check.cjs',
      `require('reflect-metadata');
       const { Controller, Module, Post } = require('@nestjs/common');
       const { NestFactory } = require('@nestjs/core');
       const { DtmClient, DtmModule, DtmBranchRegistry, SagaAction } = require('nestjs-dtm');
       class Bank { pay() { return { paid: true }; } }
       // as TypeScript's decorator emit does: each decorator gets the descriptor, which is written back
       const descriptor = Object.getOwnPropertyDescriptor(Bank.prototype, 'pay');
       SagaAction('pay', { compensate: false })(Bank.prototype, 'pay', descriptor);
       Post('pay')(Bank.prototype, 'pay', descriptor);
       Object.defineProperty(Bank.prototype, 'pay', descriptor);
       Controller('bank')(Bank);
       class AppModule {}
       Module({ imports: [DtmModule.forRoot({ config: { serverUrl: 'http://dtm.example/api/dtmsvr', appUrl: 'http://orders' } })], controllers: [Bank] })(AppModule);
       (async () => {
         const app = await NestFactory.create(AppModule, { logger: false });
         await app.listen(0, '127.0.0.1');
         const port = app.getHttpServer().address().port;
         const res = await fetch('http://127.0.0.1:' + port + '/bank/pay?gid=g&trans_type=saga&branch_id=01&op=action', { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'null' });
         console.log(JSON.stringify({
           nest: require('@nestjs/core/package.json').version.split('.')[0],
           url: app.get(DtmBranchRegistry).target('saga-action', 'pay', 'http'),
           status: res.status, body: await res.json(),
           serverUrl: app.get(DtmClient).config.serverUrl,
         }));
         await app.close();
       })();`,
      'nest11',
    );
    expect(JSON.parse(out)).toEqual({ nest: '11', url: 'http://orders/bank/pay', status: 200, body: { paid: true }, serverUrl: 'http://dtm.example/api/dtmsvr' });
  }, 180_000);
});
