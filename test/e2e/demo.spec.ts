// The README's main command stays working: the demo (compiled by scripts/run-jest.mjs) runs its
// ten transactions against its own DTM server and databases and prints them as expected, at most
// 120 columns wide; with --keep it leaves DTM running and prints the command that queries a gid.
import { execFile, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';

const root = resolve(import.meta.dirname, '..', '..');
const DEMO = join(root, '.build', 'sample-app', 'demo.js');
/** A test's own limit, past the demo's 120 s (its run, its wait for --keep's line): jest's 60 s would cut a demo slowed by a loaded machine first, naming no step. */
const DEMO_TEST_MS = 150_000;

/** Per transaction: `mode | what | status | rollback reason | branches | data`, from the demo's table. */
function summary(stdout: string): string[] {
  const lines = stdout.split('\n');
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (!/^(saga|tcc|msg|xa|workflow) /.test(line)) return;
    const cells = line.split(/\s{2,}/);
    const details: Record<string, string> = {};
    let label = '';
    for (const next of lines.slice(i + 1)) {
      const m = /^ {10}(\w+)? +(.*)$/.exec(next);
      if (!m || /^(saga|tcc|msg|xa|workflow) /.test(next)) break;
      if (m[1]) label = m[1];
      details[label] = details[label] ? `${details[label]} ${m[2]}` : m[2];
    }
    out.push([cells[0], cells[1], cells[2], details.reason ?? cells[3] ?? '', details.branches, details.data].join(' | '));
  });
  return out;
}

describe('npm run demo', () => {
  it('runs every mode against the sample app and prints what DTM recorded, at most 120 columns wide', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [DEMO], { cwd: root, env: withoutDemoSettings(process.env), timeout: 120_000 });
    expect(summary(stdout)).toEqual([
      'saga | transfer 30 alice -> bob | succeed |  | bankA.withdraw action ok, bankB.deposit action ok | alice 100, bob 0 -> alice 70, bob 30',
      'saga | checkout 2 widgets, ship to atlantis | failed | we do not ship to atlantis | take action ok, charge action ok, ship action FAILED, ship compensate ok, charge compensate ok, take compensate ok | stock 10, carol 100, shipped 0 -> stock 10, carol 100, shipped 0',
      'saga | checkout -1 widgets (the contract refuses it) | refused | DtmRemoteBranchError: qty: must be a positive whole number | (none called) | stock 10, carol 100, shipped 0 -> stock 10, carol 100, shipped 0',
      'tcc | reserve 1 widget, pay 25 | succeed |  | reserve confirm ok, freeze confirm ok | stock 10+0 reserved, carol 100+0 frozen -> stock 9+0 reserved, carol 75+0 frozen',
      'tcc | reserve 2 widgets, pay 500 | failed | carol cannot pay 500 | freeze cancel ok, reserve cancel ok | stock 9+0 reserved, carol 75+0 frozen -> stock 9+0 reserved, carol 75+0 frozen',
      'msg | order placed -> shipping told | succeed |  | notify action ok | purchases 0, shipped 0 -> purchases 1, shipped 1',
      'xa | transfer 20 alice -> bob | succeed |  | bankA.xaWithdraw commit ok, bankB.xaDeposit commit ok | alice 70, bob 30 -> alice 50, bob 50',
      'xa | transfer 20 alice -> mallory (no such account at B) | failed | bank B has no account mallory | bankA.xaWithdraw rollback ok | alice 50, bob 50 -> alice 50, bob 50',
      'workflow | transfer 10 alice -> bob | succeed |  | step 01 action ok, step 02 action ok | alice 50, bob 50 -> alice 40, bob 60',
      'workflow | transfer 500 alice -> bob (too much) | failed | bank A: alice cannot pay 500 | step 01 action FAILED | alice 40, bob 60 -> alice 40, bob 60',
    ]);
    expect(stdout).toContain('(v1.19.0, started for the demo)');
    expect(stdout.split('\n').filter((line) => line.length > 120)).toEqual([]);
  }, DEMO_TEST_MS);

  it('--keep leaves DTM running: the printed command finds the printed gid; Ctrl-C stops it and the demo exits 0', async () => {
    const child = spawn(process.execPath, [DEMO, '--keep'], { cwd: root, env: withoutDemoSettings(process.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 120_000;
      while (!stdout.includes('Ctrl-C stops DTM') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 200));
      const command = /curl -s '([^']+\/query\?gid=([^']+))'/.exec(stdout);
      // a demo that stopped or never printed the command: its output says why (one CI run on 2026-12-07 saw it exit early)
      if (!command) throw new Error(`the demo printed no curl command (exit code ${child.exitCode}); its stdout:\n${stdout.slice(-4000)}\nits stderr:\n${stderr.slice(-4000)}`);
      const firstGid = /^ {10}gid +(\S+)$/m.exec(stdout)![1];
      expect(command[2]).toBe(firstGid);
      const answer = (await (await fetch(command[1])).json()) as { transaction: { gid: string; status: string } };
      expect(answer.transaction).toMatchObject({ gid: firstGid, status: 'succeed' });
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      await expect(fetch(command[1])).rejects.toThrow();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, DEMO_TEST_MS);

  it('documents its options in --help', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [DEMO, '--help'], { cwd: root });
    for (const option of ['--dtm-url', '--pg-url', '--mysql-url', '--keep', 'DTM_SERVER_URL', 'PG_URL', 'MYSQL_URL']) expect(stdout).toContain(option);
  });
});

/** The environment without the variables that would make the demo use other servers. */
function withoutDemoSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DTM_SERVER_URL: _dtm, PG_URL: _pg, MYSQL_URL: _my, ...rest } = env;
  return rest;
}
