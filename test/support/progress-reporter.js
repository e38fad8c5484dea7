// Jest reporter: keeps, in the JSON file NESTJS_DTM_PROGRESS names (scripts/run-jest.mjs sets it),
// which test files run now, the test each one is at and since when, how many it finished and its
// failures so far, and the harness's file (NESTJS_DTM_HARNESS: its run dir holds the servers'
// logs). Written synchronously at each event (a test that blocks the event loop stops no write made
// before it), so that run-jest.mjs's guard, when it kills a jest that hangs, can say where it stood
// (scripts/jest-guard.mjs). Plain JS: jest loads reporters without transforming them.
import { writeFileSync } from 'node:fs';

/** Failures kept per file: the first ones say the most (the later ones often follow from them). */
const MAX_FAILURES = 5;

export default class ProgressReporter {
  constructor() {
    this.file = process.env.NESTJS_DTM_PROGRESS;
    this.running = new Map();
  }

  onTestFileStart(test) {
    this.running.set(test.path, { file: test.path, since: Date.now(), done: 0, failed: 0, failures: [] });
    this.write();
  }

  onTestCaseStart(test, info) {
    const entry = this.running.get(test.path);
    if (!entry) return;
    entry.test = info.fullName;
    entry.testSince = Date.now();
    this.write();
  }

  onTestCaseResult(test, result) {
    const entry = this.running.get(test.path);
    if (!entry) return;
    entry.done += 1;
    if (result.status === 'failed') {
      entry.failed += 1;
      if (entry.failures.length < MAX_FAILURES) entry.failures.push(`${result.fullName}: ${firstLine(result.failureMessages?.[0])}`);
    }
    entry.test = undefined;
    entry.testSince = undefined;
    this.write();
  }

  onTestFileResult(test) {
    this.running.delete(test.path);
    this.write();
  }

  write() {
    if (!this.file) return;
    try {
      writeFileSync(this.file, JSON.stringify({ harness: process.env.NESTJS_DTM_HARNESS, running: [...this.running.values()] }));
    } catch {
      // the progress is a diagnosis: never a reason for the run to fail
    }
  }
}

/** The first line of a failure message, without jest's colours, cut to 300 characters. */
function firstLine(message) {
  const line = String(message ?? '').replace(/\u001b\[[0-9;]*m/g, '').split('\n').find((l) => l.trim()) ?? '';
  return line.length > 300 ? `${line.slice(0, 300)} …` : line.trim();
}
