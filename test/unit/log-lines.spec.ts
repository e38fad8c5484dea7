// test/support/log-lines.ts: reading the shared DTM log (hundreds of MB) without reading it whole.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { logEnd, logEndText, logLines } from '../support/log-lines.js';
import { logTail } from '../support/services/process.js';

const temp = mkdtempSync(join(tmpdir(), 'log-lines-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('log-lines', () => {
  const log = join(temp, 'dtm.log');
  writeFileSync(log, `old needle\n${'x'.repeat(999)}\n`.repeat(1000));
  const from = logEnd(log);
  appendFileSync(log, 'new needle one\nother\nnew needle two\n');

  it('logLines: the lines holding the needle, written after logEnd', () => {
    expect(logLines(log, from, 'needle')).toEqual(['new needle one', 'new needle two']);
  });

  it('logEndText: the last bytes only, the whole file when smaller', () => {
    expect(logEndText(log, 20)).toBe('new needle one\nother\nnew needle two\n'.slice(-20));
    expect(logEndText(log, 10_000_000)).toHaveLength(from + 'new needle one\nother\nnew needle two\n'.length);
  });

  it("logTail (a failing wait's message): the last lines, from the file's last 256 KiB", () => {
    expect(logTail(log, 2)).toBe(`--- last 2 lines of ${log} ---\nother\nnew needle two`);
  });
});
