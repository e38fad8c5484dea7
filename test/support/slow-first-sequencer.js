// Jest test sequencer: jest's own, except on a machine with no record of earlier runs (a fresh CI
// machine), where jest orders the files by size and a small file that waits long (chaos.spec: 100
// lines, about 110 s) would start last and hold the run's end. There the files SLOW_FIRST names start
// first, in its order, then the others by size. With a record, jest's own order (the slowest first,
// failed ones before them) is kept. Plain JS: jest loads its sequencer without transforming it.
import { relative, sep } from 'node:path';
import JestSequencer from '@jest/test-sequencer';

/**
 * Spec files of about 40 s and more when run alone, slowest first; among them the package tests,
 * which mostly compute (npm install, tsc, an app's own Jest or Vitest: 40 to 50 s of CPU each), between
 * files that mostly wait, so that they start early without all computing at once.
 */
export const SLOW_FIRST = [
  'test/e2e/chaos.spec.ts',
  'test/e2e/outcome-certainty.spec.ts',
  'test/e2e/dtm-store-stall.spec.ts',
  'test/e2e/bench-smoke.spec.ts',
  'test/package/nest11-jest-app.spec.ts',
  'test/e2e/client-tcc-xa.spec.ts',
  'test/package/tarball.spec.ts',
  'test/e2e/client-msg.spec.ts',
  'test/package/nest12-vitest-app.spec.ts',
  'test/e2e/client-msg-grpc.spec.ts',
  'test/package/nest12-jest-app.spec.ts',
  'test/e2e/branches.spec.ts',
  'test/e2e/branch-auth-recreated.spec.ts',
  'test/e2e/go-interop.spec.ts',
  'test/e2e/client-saga.spec.ts',
  'test/e2e/xa.spec.ts',
  'test/e2e/barrier.spec.ts',
];

/** jest's sequencer, with SLOW_FIRST's files first when jest has no timing of a file. */
export default class SlowFirstSequencer extends (JestSequencer.default ?? JestSequencer) {
  sort(tests) {
    const sorted = super.sort(tests); // sets each test's duration from jest's record, if it has one
    if (sorted.every((test) => test.duration != null)) return sorted;
    const rank = (test) => {
      const at = SLOW_FIRST.indexOf(relative(test.context.config.rootDir, test.path).split(sep).join('/'));
      return at < 0 || test.duration != null ? SLOW_FIRST.length : at;
    };
    return sorted.map((test, index) => ({ test, index, rank: rank(test) })).sort((a, b) => a.rank - b.rank || a.index - b.index).map(({ test }) => test);
  }
}
