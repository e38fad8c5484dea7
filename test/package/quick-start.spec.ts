// The README's Quick start, run as a user would: examples/quick-start (whose files the README shows
// verbatim; test/unit/docs.spec.ts compares them) installed with nestjs-dtm from the packed tarball,
// built with its own tsc, started with `node dist/main.js` against the harness's DTM server and a
// PostgreSQL database of its own. A transfer through its POST /transfers route: what DTM recorded,
// the barrier rows and the balances; then a transfer DTM rolls back.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { fileDatabases } from '../support/databases.js';
import { harness, queryTrans } from '../support/harness.js';
import { freePort, minimalEnv, runDirFrom, startProcess, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { compilerVersion, installConsumerApp, repositoryCompilers, type ConsumerApp } from './consumer-app.js';

const example = resolve(import.meta.dirname, '..', '..', 'examples', 'quick-start');
let app: ConsumerApp;
let server: ManagedProcess | undefined;
let db: pg.Client;
let url: string;

beforeAll(async () => {
  app = installConsumerApp('quick-start', undefined, example);
  const build = app.run('npm', ['run', 'build']);
  if (build.status !== 0) throw new Error(`npm run build failed:\n${build.output}`);
  const { postgres } = await fileDatabases();
  db = new pg.Client({ connectionString: postgres.url });
  await db.connect();
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const runDir = runDirFrom(harness().runDir);
  server = startProcess({
    name: 'quick-start',
    command: process.execPath,
    args: ['dist/main.js'],
    cwd: app.dir,
    runDir,
    logFile: join(runDir.path, `quick-start-${process.pid}.log`),
    // DTM runs on this host here: APP_URL is the app's own address, not host.docker.internal
    env: minimalEnv({ DATABASE_URL: postgres.url, DTM_SERVER_URL: harness().dtm.serverUrl, APP_URL: url, PORT: String(port) }),
  });
  await waitUntil('the quick-start app', async () => (await fetch(`${url}/transfers`)).status === 404, { timeoutMs: 30_000, process: server });
}, 300_000);

afterAll(async () => {
  await server?.stop();
  await db?.end();
  app?.remove();
});

async function transfer(from: string, to: string, amount: number): Promise<{ gid: string; status: string; rollbackReason?: string }> {
  const res = await fetch(`${url}/transfers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ from, to, amount }) });
  expect(res.status).toBe(200);
  return (await res.json()) as { gid: string; status: string; rollbackReason?: string };
}

async function balances(): Promise<Record<string, number>> {
  const { rows } = await db.query<{ name: string; balance: number }>('SELECT name, balance FROM account ORDER BY name');
  return Object.fromEntries(rows.map((r) => [r.name, r.balance]));
}

describe('the Quick start (examples/quick-start) against the real DTM server', () => {
  it('the app created its tables before starting: the accounts, and the barrier table ensureBarrierSchema made', async () => {
    expect(await balances()).toEqual({ alice: 100, bob: 0 });
    const { rows } = await db.query("SELECT to_regclass('dtm_barrier.barrier') AS t");
    expect(rows[0].t).toBe('dtm_barrier.barrier');
  });

  it('POST /transfers alice -> bob 30: DTM records the saga succeeded, each action ran once behind the barrier', async () => {
    const out = await transfer('alice', 'bob', 30);
    expect(out.status).toBe('succeed');
    const record = await queryTrans(out.gid);
    expect([record.transaction?.trans_type, record.transaction?.status]).toEqual(['saga', 'succeed']);
    expect(record.branches.map((b) => `${b.branch_id}:${b.op}:${b.status}`)).toEqual(['01:compensate:prepared', '01:action:succeed', '02:compensate:prepared', '02:action:succeed']);
    expect(record.branches.map((b) => new URL(b.url ?? '').pathname)).toEqual(['/bank/withdraw-compensate', '/bank/withdraw', '/bank/deposit-compensate', '/bank/deposit']);
    const barrier = await db.query('SELECT branch_id, op FROM dtm_barrier.barrier WHERE gid = $1 ORDER BY branch_id', [out.gid]);
    expect(barrier.rows).toEqual([{ branch_id: '01', op: 'action' }, { branch_id: '02', op: 'action' }]);
    expect(await balances()).toEqual({ alice: 70, bob: 30 });
  });

  it('POST /transfers alice -> zed: the deposit answers FAILURE, DTM compensates the withdrawal, the money is back', async () => {
    const out = await transfer('alice', 'zed', 10);
    expect(out.status).toBe('failed');
    expect(out.rollbackReason).toContain('no account zed');
    const record = await queryTrans(out.gid);
    expect(record.transaction?.status).toBe('failed');
    expect(record.branches.map((b) => `${b.branch_id}:${b.op}:${b.status}`)).toEqual(['01:compensate:succeed', '01:action:succeed', '02:compensate:succeed', '02:action:failed']);
    expect(await balances()).toEqual({ alice: 70, bob: 30 });
  });
});

describe('the Quick start built by TypeScript 7', () => {
  it("TypeScript 7.0 (what the README's `npm install -D typescript` installs) builds it to the same JavaScript as the app's TypeScript 6, which the tests above ran (decorator metadata included)", () => {
    const { tsc } = repositoryCompilers.find((c) => c.version === '7.0')!;
    expect([compilerVersion(join(app.dir, 'node_modules', 'typescript', 'bin', 'tsc')), compilerVersion(tsc)]).toEqual([expect.stringMatching(/^6\./), expect.stringMatching(/^7\.0\./)]);
    const build = app.run('node', [tsc, '--outDir', 'dist-ts7']);
    expect([build.status, build.output.trim()]).toEqual([0, '']);
    const files = readdirSync(join(app.dir, 'dist')).sort();
    expect(files).toEqual(expect.arrayContaining(['app.module.js', 'main.js']));
    expect(readdirSync(join(app.dir, 'dist-ts7')).sort()).toEqual(files);
    for (const file of files) expect([file, readFileSync(join(app.dir, 'dist-ts7', file), 'utf8')]).toEqual([file, readFileSync(join(app.dir, 'dist', file), 'utf8')]);
  }, 60_000);
});

describe("the Quick start's tsconfig with tests beside src/", () => {
  it("npm start's tsc builds src/ alone when the app has files outside it: docs/testing.md's test/*.e2e-spec.ts, a vitest.config.ts (before: TS6059, not under rootDir src)", () => {
    mkdirSync(join(app.dir, 'test'), { recursive: true });
    writeFileSync(join(app.dir, 'test', 'transfers.e2e-spec.ts'), "import { Transfers } from '../src/transfers.js';\nexport const used = Transfers;\n");
    writeFileSync(join(app.dir, 'vitest.config.ts'), 'export default {};\n');
    try {
      const build = app.run('npm', ['run', 'build']);
      expect([build.status, build.output.includes('TS6059')]).toEqual([0, false]);
    } finally {
      rmSync(join(app.dir, 'test'), { recursive: true, force: true });
      rmSync(join(app.dir, 'vitest.config.ts'), { force: true });
    }
  }, 120_000);
});
