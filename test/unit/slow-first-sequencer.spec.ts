// test/support/slow-first-sequencer.js: on a machine with no record of earlier runs, the spec files known to be slow
// start first (jest alone would order by size, and a small slow file would hold the run's end); with a record,
// jest's own order stays.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import SlowFirstSequencer, { SLOW_FIRST, type SequencedTest } from '../support/slow-first-sequencer.js';

const root = process.cwd();
const cacheDirectory = mkdtempSync(join(tmpdir(), 'slow-first-sequencer-'));
afterAll(() => rmSync(cacheDirectory, { recursive: true, force: true }));

/** Every spec file of test/e2e, test/package and test/unit, as jest hands them to the sequencer (`id`: whose timing record). */
function specs(id: string): SequencedTest[] {
  const context = { config: { rootDir: root, cache: true, cacheDirectory, id, haste: {} }, hasteFS: { getSize: (path: string) => statSync(path).size } };
  return ['test/e2e', 'test/package', 'test/unit']
    .flatMap((dir) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.spec.ts')).map((f) => `${dir}/${f}`))
    .map((file) => ({ path: join(root, file), context }));
}

const relative = (tests: SequencedTest[]) => tests.map((t) => t.path.slice(root.length + 1));

describe('SlowFirstSequencer', () => {
  it('names files that exist (a renamed spec file must be renamed in SLOW_FIRST too)', () => {
    expect(SLOW_FIRST.filter((file) => !existsSync(join(root, file)))).toEqual([]);
  });

  it('with no timing record: the SLOW_FIRST files first, in its order, then the others by size, largest first', () => {
    const order = relative(new SlowFirstSequencer({}).sort(specs('none')));
    expect(order.slice(0, SLOW_FIRST.length)).toEqual(SLOW_FIRST);
    const rest = order.slice(SLOW_FIRST.length);
    const sizes = rest.map((file) => statSync(join(root, file)).size);
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
    expect(new Set(order).size).toBe(specs('none').length);
  });

  it("with a timing record: jest's order (the slowest first), SLOW_FIRST ignored", () => {
    const tests = specs('recorded');
    const last = relative(tests)[tests.length - 1];
    // jest's record, written as jest writes it after a run: every file 1 ms, but the last one by name 99 s
    const testResults = tests.map((t) => ({ testFilePath: t.path, numFailingTests: 0, perfStats: { runtime: t.path.endsWith(last) ? 99_000 : 1 } }));
    new SlowFirstSequencer({}).cacheResults(tests, { testResults });
    const order = relative(new SlowFirstSequencer({}).sort(specs('recorded')));
    expect(order[0]).toBe(last);
    expect(order.slice(1, 1 + SLOW_FIRST.length)).not.toEqual(SLOW_FIRST);
  });
});
