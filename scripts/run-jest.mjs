// Compiles the project with tsc into .build/ (the type check of everything, and the harness's global
// setup that jest loads as JavaScript), builds the package into dist/ (scripts/build.mjs: what child
// processes of the tests import as 'nestjs-dtm'), runs ESLint (a lint error counts as one failed
// test), runs jest in native ESM mode, then prints the plain summary "N passed, N failed" as the very last
// line (from jest's JSON results, after jest and its global teardown have finished) and exits
// non-zero on any failure. Arguments are passed to jest (e.g. a path pattern).
// With --unit (`npm run test:unit`): only test/unit, no type check, lint, declarations nor servers (jest.unit.config.js).
// With --no-checks (scripts/test.sh's run on its second Node.js): no type check, build nor lint, whose results do not
// depend on the Node.js that runs them: it runs on the .build/ and dist/ the first run made.
// JEST_RUN_TIMEOUT_MINUTES (default 15, fractions allowed): the whole-run guard (scripts/jest-guard.mjs).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runGuarded } from './jest-guard.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultFile = join(root, '.test-results', 'jest.json');
// where test/support/progress-reporter.js keeps what runs now, for the guard's report
const progressFile = join(root, '.test-results', 'progress.json');
mkdirSync(dirname(resultFile), { recursive: true });
rmSync(resultFile, { force: true });
rmSync(progressFile, { force: true });

const unit = process.argv.includes('--unit');
const noChecks = process.argv.includes('--no-checks');
const jestArgs = process.argv.slice(2).filter((a) => a !== '--unit' && a !== '--no-checks');
const steps = [
  { what: 'the type check (tsc -p tsconfig.json)', args: [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')] },
  { what: 'the package build (scripts/build.mjs)', args: [join(root, 'scripts', 'build.mjs')] },
];
// the unit tests need the JavaScript of dist/ only where they run the library in a child process
const unitSteps = [{ what: 'the package build (scripts/build.mjs --js-only)', args: [join(root, 'scripts', 'build.mjs'), '--js-only'] }];
for (const step of unit ? unitSteps : noChecks ? [] : steps) {
  const run = spawnSync(process.execPath, step.args, { cwd: root, stdio: 'inherit' });
  if (run.status !== 0) {
    console.log(`${step.what} failed: see above`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}
let lintFailed = 0;
if (!unit && !noChecks) {
  const lint = spawnSync(process.execPath, [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js')], { cwd: root, stdio: 'inherit' });
  if (lint.status !== 0) {
    console.log('ESLint found problems (above): counted as 1 failed test');
    lintFailed = 1;
  }
}

// a run that outlives this (a test that hangs, or a handle left open that keeps jest alive after
// the last test) is killed and counted as a failure, so that it never eats CI's time; before the
// kill, the guard prints the files still running, their test, and the servers' last log lines
const jestTimeoutMinutes = Number(process.env.JEST_RUN_TIMEOUT_MINUTES ?? 15);
const jest = await runGuarded(
  process.execPath,
  [
    '--experimental-vm-modules',
    '--disable-warning=ExperimentalWarning',
    join(root, 'node_modules', 'jest', 'bin', 'jest.js'),
    ...(unit ? ['--config', join(root, 'jest.unit.config.js')] : []),
    '--json',
    `--outputFile=${resultFile}`,
    ...jestArgs,
  ],
  { cwd: root, env: { ...process.env, NESTJS_DTM_PROGRESS: progressFile }, timeoutMs: jestTimeoutMinutes * 60_000, progressFile },
);
const timedOut = jest.timedOut;

let passed = 0;
let failed = 0;
let skipped = 0;
let failures = [];
try {
  const results = JSON.parse(readFileSync(resultFile, 'utf8'));
  passed = results.numPassedTests;
  skipped = results.numPendingTests + results.numTodoTests;
  // A file that failed to run (syntax error, failing beforeAll/import) has no test results: count it.
  const brokenFiles = results.testResults.filter((r) => r.status === 'failed' && r.assertionResults.every((a) => a.status !== 'failed')).length;
  failed = results.numFailedTests + brokenFiles;
  failures = listFailures(results);
} catch {
  // no results: jest did not get to run the tests (bad config, global setup failed)
}
failed += lintFailed;
if (timedOut) {
  console.log(`jest did not exit within ${jestTimeoutMinutes} minutes (a test hangs, or something it opened keeps the process alive): killed, counted as 1 failed test`);
  failed += 1;
}
if (jest.status !== 0 && !timedOut && failed === lintFailed) {
  console.log(`jest exited with ${jest.status ?? jest.signal} without a failing test (see above)`);
  failed = 1;
}
// Named again just above the summary, one line each, so that a log's last lines say what failed
// (scripts/test.sh repeats them at the end of both runs).
for (const line of failures) console.log(line);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);

/** "failed: <file> › <test>: <its error's first lines>" for each failed test, "failed to run: <file>: ..." for a broken file. */
function listFailures(results) {
  const plain = (text) => String(text ?? '').replace(/\u001b\[[0-9;]*m/g, '');
  // the error's first three lines (for expect: the matcher, Expected, Received), without stack lines
  const firstLine = (text) =>
    plain(text).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('●') && !l.startsWith('at ')).slice(0, 3).join(' | ').slice(0, 400);
  const lines = [];
  for (const file of results.testResults) {
    const name = relative(root, file.name);
    const failedTests = file.assertionResults.filter((a) => a.status === 'failed');
    for (const test of failedTests) lines.push(`failed: ${name} › ${test.fullName}: ${firstLine(test.failureMessages?.[0])}`);
    if (file.status === 'failed' && failedTests.length === 0) lines.push(`failed to run: ${name}: ${firstLine(file.message)}`);
  }
  return lines;
}
