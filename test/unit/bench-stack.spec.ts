// bench/bench-stack.ts on a running test harness's servers (BENCH_HARNESS, how test/e2e/bench-smoke.spec.ts runs every
// benchmark): the files of the processes a benchmark starts (chaos's DTM `dtm-chaos` with its dtm.yml, `chaos-bank.log`)
// go to a directory of the benchmark's own, not the harness's run directory, where a test file (chaos.spec) starts
// processes of the same names at the same time; the harness's reaper still knows them.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { BENCH_HARNESS_ENV, benchStack } from '../../bench/bench-stack.js';

const harnessDir = mkdtempSync(join(tmpdir(), 'bench-stack-'));
afterAll(() => rmSync(harnessDir, { recursive: true, force: true }));

describe("benchStack on the harness's servers", () => {
  it("gives each benchmark a run directory of its own inside the harness's, its processes in the harness's reaper's file", async () => {
    const stackFile = join(harnessDir, 'stack.json');
    const server = { serverUrl: 'http://127.0.0.1:1/api/dtmsvr' };
    writeFileSync(stackFile, JSON.stringify({ runDir: harnessDir, dtm: server, postgres: server, mariadb: server, redis: server }));
    const before = process.env[BENCH_HARNESS_ENV];
    process.env[BENCH_HARNESS_ENV] = stackFile;
    try {
      const [one, two] = [await benchStack({ dtm: false }), await benchStack({ dtm: false })];
      for (const stack of [one, two]) {
        expect(stack.shared).toBe(true);
        expect(dirname(stack.runDir.path)).toBe(harnessDir);
        expect(statSync(stack.runDir.path).isDirectory()).toBe(true);
        expect(stack.runDir.pgidFile).toBe(join(harnessDir, 'pgids'));
      }
      expect(one.runDir.path).not.toBe(two.runDir.path);
    } finally {
      if (before === undefined) delete process.env[BENCH_HARNESS_ENV];
      else process.env[BENCH_HARNESS_ENV] = before;
    }
  });
});
