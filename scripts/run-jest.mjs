// Compiles the project with tsc into .build/ (the type check of everything, and the harness's global
// setup that jest loads as JavaScript) and the library into dist/ (what child processes of the
// tests import as 'nestjs-dtm'), runs jest in native ESM mode, then prints the plain summary "N passed, N failed" as the very last
// line (from jest's JSON results, after jest and its global teardown have finished) and exits
// non-zero on any failure. Arguments are passed to jest (e.g. a path pattern).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultFile = join(root, '.test-results', 'jest.json');
mkdirSync(dirname(resultFile), { recursive: true });
rmSync(resultFile, { force: true });

for (const project of ['tsconfig.json', 'tsconfig.build.json']) {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, project)], { cwd: root, stdio: 'inherit' });
  if (tsc.status !== 0) {
    console.log(`the type check (tsc -p ${project}) failed: see above`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

const jest = spawnSync(
  process.execPath,
  [
    '--experimental-vm-modules',
    '--disable-warning=ExperimentalWarning',
    join(root, 'node_modules', 'jest', 'bin', 'jest.js'),
    '--json',
    `--outputFile=${resultFile}`,
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: 'inherit' },
);

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const results = JSON.parse(readFileSync(resultFile, 'utf8'));
  passed = results.numPassedTests;
  skipped = results.numPendingTests + results.numTodoTests;
  // A file that failed to run (syntax error, failing beforeAll/import) has no test results: count it.
  const brokenFiles = results.testResults.filter((r) => r.status === 'failed' && r.assertionResults.every((a) => a.status !== 'failed')).length;
  failed = results.numFailedTests + brokenFiles;
} catch {
  // no results: jest did not get to run the tests (bad config, global setup failed)
}
if (jest.status !== 0 && failed === 0) {
  console.log(`jest exited with ${jest.status ?? jest.signal} without a failing test (see above)`);
  failed = 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
