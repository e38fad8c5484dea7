// test/support/dtm-log-reporter.js: what the DTM server logged while a failing file ran is read from
// the log's end, 4 MiB at most (the shared log reaches hundreds of MB), and its last lines printed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, jest } from '@jest/globals';
import DtmLogReporter from '../support/dtm-log-reporter.js';

const temp = mkdtempSync(join(tmpdir(), 'dtm-log-reporter-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** What the reporter writes for a failing file while the DTM log holds `text` (the file started at offset 0). */
function reported(text: string): string {
  const log = join(temp, `dtm-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(log, text);
  const harness = join(temp, 'harness.json');
  writeFileSync(harness, JSON.stringify({ dtm: { logFile: log } }));
  const previous = process.env.NESTJS_DTM_HARNESS;
  process.env.NESTJS_DTM_HARNESS = harness;
  const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const reporter = new DtmLogReporter();
    reporter.onTestFileStart({ path: '/x.spec.ts' });
    writeFileSync(log, text); // what it logged while the file ran
    (reporter as unknown as { offsets: Map<string, number> }).offsets.set('/x.spec.ts', 0);
    reporter.onTestFileResult({ path: '/x.spec.ts' }, { numFailingTests: 1 });
    return write.mock.calls.map((c) => String(c[0])).join('');
  } finally {
    write.mockRestore();
    process.env.NESTJS_DTM_HARNESS = previous;
  }
}

describe('DtmLogReporter', () => {
  it('prints the last lines of a 12 MB log read from its last 4 MiB only, naming what it left out, the piece of a line at the cut dropped', () => {
    const line = `${'y'.repeat(999)}\n`;
    const out = reported(`FIRST\n${line.repeat(12_000)}LAST LINE\n`);
    expect(out).toContain('LAST LINE');
    expect(out).not.toContain('FIRST');
    expect(out).toMatch(/120 of \d+ lines of its last 4 MiB \(\d+ bytes before them left out\)/);
    const shown = out.split('\n').filter((l) => l.startsWith('y'));
    expect(shown.every((l) => l === `${'y'.repeat(600)} …`)).toBe(true);
  });

  it('prints a small log whole, /query calls left out', () => {
    const out = reported('a line\nGET /api/dtmsvr/query?gid=x\nanother\n');
    expect(out).toContain('(2 of 2 lines, /query calls left out');
    expect(out).toContain('a line\nanother\n');
  });
});
