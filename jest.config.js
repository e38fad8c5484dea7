/**
 * Jest runs in native ESM mode (Nest 12 is ESM-only): scripts/run-jest.mjs starts it with
 * --experimental-vm-modules, after compiling the project with tsc into .build/. The global setup and
 * teardown are that compiled JavaScript: jest loads them with Node's own loader, which neither
 * reads TypeScript nor applies moduleNameMapper.
 */
/** Set by scripts/test.sh for `npm test`'s run on its second Node.js (scripts/second-node.sh). */
const secondNodeRun = process.env.NESTJS_DTM_SECOND_NODE_RUN === '1';
/**
 * Files in `npm test`'s first run only (this machine's Node.js: in CI Node 20, the lowest the package supports), so
 * that both runs together stay well under 15 minutes on CI's two cores. A second run asked for one of them alone
 * finds nothing, and passes. Each is one of:
 * - a check whose verdict is the same on any Node.js: the benchmarks' smoke runs (bench/'s scripts, about 90 s of
 *   CPU; on the lowest Node, where a script using a newer API fails) and the docs' type check;
 * - a file whose subject is the DTM server's or a database's own behaviour, which the module meets on any Node.js:
 *   DTM's stores stalling, lost to a restart, their limits, its topics, its gids' case, its two rounds, the
 *   harness itself, MariaDB's unapplied XA phase 2, a database's lock waits and refusals at the barrier;
 * - a soak of code the other files run on both (the chaos seeds, the load files).
 */
const FIRST_RUN_ONLY = [
  'e2e/bench-smoke',
  'package/docs-typecheck',
  'e2e/dtm-store-stall',
  'e2e/dtm-restart',
  'e2e/dtm-restart-sql',
  'e2e/dtm-restart-mariadb',
  'e2e/dtm-sql-store-limits',
  'e2e/dtm-redis-topics',
  'e2e/dtm-mysql-gid-case',
  'e2e/dtm-two-rounds',
  'e2e/harness',
  'e2e/xa-mariadb-unapplied',
  'e2e/lock-timeouts',
  'e2e/barrier-db-errors',
  'e2e/chaos',
  'e2e/load',
  'e2e/xa-load',
].map((file) => `<rootDir>/test/${file}\\.spec\\.ts$`);
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
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/package/apps/', ...(secondNodeRun ? FIRST_RUN_ONLY : [])],
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
