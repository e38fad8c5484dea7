// scripts/run-jest.mjs's whole-run guard (scripts/jest-guard.mjs): when it kills a jest that hangs,
// its output says which file and which test were running, their failures so far, and the last lines
// of the servers' logs of the harness's run dir, read from their ends; the summary stays last. And
// its list of the failed tests just above the summary (what a CI report's tail shows).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { hangReport } from '../../scripts/jest-guard.mjs';

const root = join(import.meta.dirname, '..', '..');
const temp = mkdtempSync(join(tmpdir(), 'jest-guard-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** A run dir as the harness leaves it: harness.json, a DTM log of `dtmLines` lines after 3 MB of long ones, a Go peer log. */
function fakeRunDir(name: string, dtmLines: number): string {
  const dir = join(temp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'harness.json'), JSON.stringify({ runDir: dir, dtm: { logFile: join(dir, 'dtm.log') } }));
  const payload = `query gid=big ${'x'.repeat(1024 * 1024)}\n`;
  const numbered = Array.from({ length: dtmLines }, (_, i) => `dtm line ${i + 1}`).join('\n');
  writeFileSync(join(dir, 'dtm.log'), `${payload.repeat(3)}${numbered}\n${'p'.repeat(5000)}\n`);
  writeFileSync(join(dir, 'go-peer-1.log'), 'listening\ngo: branch error: stuck\n');
  return join(dir, 'harness.json');
}

describe("run-jest.mjs's guard", () => {
  it('reports the files running, the test each is at, their failures so far and the tails of the run dir logs (from their ends, lines cut)', () => {
    const progress = join(temp, 'progress.json');
    const now = 1_000_000;
    writeFileSync(
      progress,
      JSON.stringify({
        harness: fakeRunDir('run-a', 50),
        running: [
          { file: join(root, 'test/e2e/go-interop.spec.ts'), since: now - 600_000, done: 37, failed: 2, failures: ['a › b: expected 200', 'a › c: POST http://x/ap/saga (gid g1): no answer within 20000 ms'], test: 'workflows › a Go workflow killed', testSince: now - 61_000 },
          { file: join(root, 'test/e2e/other.spec.ts'), since: now - 5_000, done: 0, failed: 0, failures: [] },
        ],
      }),
    );
    const report = hangReport(progress, { root, now });
    expect(report).toContain('still running: test/e2e/go-interop.spec.ts (for 600 s; 37 tests finished, 2 failed)\n  at the test "workflows › a Go workflow killed" for 61 s\n  failed: a › b: expected 200\n  failed: a › c: POST http://x/ap/saga (gid g1): no answer within 20000 ms');
    expect(report).toContain('still running: test/e2e/other.spec.ts (for 5 s; 0 tests finished, 0 failed)\n  in a hook (beforeAll / beforeEach / afterEach / afterAll) or between tests');
    const dtm = report.slice(report.indexOf('--- last 40 lines of dtm.log')).split('\n--- ')[0];
    expect(dtm).toContain('dtm line 50\n');
    expect(dtm).toContain('dtm line 12\n');
    expect(dtm).not.toContain('dtm line 11\n');
    expect(dtm).toContain(`${'p'.repeat(400)} … (5000 characters)`);
    expect(report).toContain('--- last 2 lines of go-peer-1.log');
    expect(report).toContain('go: branch error: stuck');
    expect(report.length).toBeLessThan(30_000);
  });

  it('kills a run whose test blocks for good: the output names the file and the test, the last log lines, and ends with "0 passed, 1 failed"', async () => {
    const project = throwawayProject('project', {
      'hang.spec.ts':
        "import { describe, it } from '@jest/globals';\n" +
        "describe('a peer', () => {\n" +
        "  it('waits for an answer that never comes', () => {\n" +
        '    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000); // jest\'s own timeout cannot fire\n' +
        '  });\n' +
        '});\n',
    });
    const harness = fakeRunDir('run-b', 3);
    const started = Date.now();
    const output = await runJest(project, { JEST_RUN_TIMEOUT_MINUTES: '0.5', NESTJS_DTM_HARNESS: harness });
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(output).toMatch(/still running: test\/unit\/hang\.spec\.ts \(for \d+ s; 0 tests finished, 0 failed\)\n {2}at the test "a peer waits for an answer that never comes" for \d+ s/);
    expect(output).toContain('--- last 4 lines of dtm.log');
    expect(output).toContain('dtm line 3');
    expect(output).toContain('go: branch error: stuck');
    expect(output).toContain('jest did not exit within 0.5 minutes');
    expect(output.trimEnd().split('\n').at(-1)).toBe('0 passed, 1 failed');
  }, 90_000);

  it('names each failed test again just above the summary: file, test, the error\'s first lines; a file that failed to run too', async () => {
    const project = throwawayProject('project-fails', {
      'sums.spec.ts':
        "import { expect, it } from '@jest/globals';\n" +
        "it('adds', () => expect(1 + 1).toBe(2));\n" +
        "it('adds wrongly', () => expect(2 + 2).toBe(5));\n",
      'broken.spec.ts': "throw new Error('cannot load');\n",
    });
    const lines = (await runJest(project)).trimEnd().split('\n');
    // the two files' lines in the order jest finished them
    const listed = lines.slice(-3, -1).sort();
    expect(listed[1]).toBe('failed: test/unit/sums.spec.ts › adds wrongly: Error: expect(received).toBe(expected) // Object.is equality | Expected: 5 | Received: 4');
    expect(listed[0]).toMatch(/^failed to run: test\/unit\/broken\.spec\.ts: cannot load \| /);
    expect(lines.at(-1)).toBe('1 passed, 2 failed');
  }, 90_000);
});

/** A copy of the runner in a throwaway project `name` under the test's temp dir: its build step a no-op, `specs` (file name → source) in test/unit. */
function throwawayProject(name: string, specs: Record<string, string>): string {
  const project = join(temp, name);
  for (const file of ['scripts/run-jest.mjs', 'scripts/jest-guard.mjs', 'jest.config.js', 'jest.unit.config.js', 'tsconfig.json', 'test/support/progress-reporter.js', 'test/support/slow-first-sequencer.js']) {
    mkdirSync(dirname(join(project, file)), { recursive: true });
    copyFileSync(join(root, file), join(project, file));
  }
  symlinkSync(join(root, 'node_modules'), join(project, 'node_modules'));
  writeFileSync(join(project, 'scripts/build.mjs'), '// the real build is not what this test is about\n');
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module' }));
  mkdirSync(join(project, 'test/unit'), { recursive: true });
  for (const [file, source] of Object.entries(specs)) writeFileSync(join(project, 'test/unit', file), source);
  return project;
}

/** What `scripts/run-jest.mjs --unit` prints in `project` (stdout and stderr), with `env` beside PATH and HOME. */
function runJest(project: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise<string>((resolve) => {
    const child = spawn(process.execPath, [join(project, 'scripts/run-jest.mjs'), '--unit'], { cwd: project, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('exit', () => resolve(text));
  });
}
