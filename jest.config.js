/**
 * Jest runs in native ESM mode (Nest 12 is ESM-only): scripts/run-jest.mjs starts it with
 * --experimental-vm-modules, after compiling the project with tsc into .build/. The global setup and
 * teardown are that compiled JavaScript: jest loads them with Node's own loader, which neither
 * reads TypeScript nor applies moduleNameMapper.
 */
/** Set by scripts/test.sh for `npm test`'s run on its second Node.js (scripts/second-node.sh). */
const secondNodeRun = process.env.NESTJS_DTM_SECOND_NODE_RUN === '1';
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^nestjs-dtm$': '<rootDir>/lib/index.ts',
    '^nestjs-dtm/testing$': '<rootDir>/lib/testing/index.ts',
  },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  // test/package/apps: example apps the package tests install and run with their own Jest / Vitest
  modulePathIgnorePatterns: ['<rootDir>/.build/', '<rootDir>/dist/', '<rootDir>/.tools/', '<rootDir>/test/package/apps/'],
  // the benchmarks' smoke runs (bench-smoke.spec.ts, about 50 s) check bench/'s scripts, which the other files do not run:
  // once per `npm test`, in its first run (this machine's Node.js: in CI Node 20, the lowest the package supports, where
  // a script using a newer API fails); a second run asked for that file alone then finds nothing, and passes. So does
  // the docs' type check (docs-typecheck.spec.ts): tsc's verdict on the docs' blocks is the same on any Node.js.
  testPathIgnorePatterns: [
    '/node_modules/',
    '<rootDir>/test/package/apps/',
    ...(secondNodeRun ? ['<rootDir>/test/e2e/bench-smoke.spec.ts', '<rootDir>/test/package/docs-typecheck.spec.ts'] : []),
  ],
  passWithNoTests: secondNodeRun,
  globalSetup: '<rootDir>/.build/test/support/global-setup.js',
  globalTeardown: '<rootDir>/.build/test/support/global-teardown.js',
  reporters: ['default', '<rootDir>/test/support/dtm-log-reporter.js', '<rootDir>/test/support/progress-reporter.js'],
  testSequencer: '<rootDir>/test/support/slow-first-sequencer.js',
  testTimeout: 60_000,
  // Most spec files wait on DTM's timers (retry intervals, a message's timeout, its cron), not on the CPU: on a
  // 2-core machine one run of the suite took about 9 minutes with 3 workers, 6.3 with 5, 4.7 with 8 (the CPU then saturated).
  maxWorkers: 6,
};
