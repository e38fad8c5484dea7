import { afterAll, beforeAll, beforeEach } from '@jest/globals';
import type { BranchRecord, DtmClient, TransactionHelper } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from './dtm-app.js';
import { startRecorder, type Recorder } from './recorder.js';

/** What `useDtmAppWithRecorder` gives a spec; read its fields inside tests and hooks, not at load time. */
export interface DtmAppWithRecorder {
  readonly app: DtmTestApp;
  readonly client: DtmClient;
  readonly helper: TransactionHelper;
  readonly recorder: Recorder;
}

/**
 * Registers the spec's hooks: a recorder app and a DtmModule test app started once for the file
 * (closed after it), the recorder reset before each test.
 */
export function useDtmAppWithRecorder(): DtmAppWithRecorder {
  let app: DtmTestApp | undefined;
  let recorder: Recorder | undefined;
  beforeAll(async () => {
    recorder = await startRecorder();
    app = await startDtmApp();
  });
  afterAll(async () => {
    await app?.close();
    await recorder?.close();
  });
  beforeEach(() => recorder?.reset());
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useDtmAppWithRecorder: read inside a test or hook, after beforeAll');
    return value;
  };
  return {
    get app() { return started(app); },
    get client() { return started(app).client; },
    get helper() { return started(app).helper; },
    get recorder() { return started(recorder); },
  };
}

/** A transaction's branches as DTM recorded them, one `branchId op status` line each, in storage order. */
export function branchLines(record: { branches: BranchRecord[] }): string[] {
  return record.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`);
}

export { sleep } from './services/process.js';
