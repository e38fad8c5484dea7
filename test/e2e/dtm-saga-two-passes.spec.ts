// DTM v1.19.0 behaviour a saga's user must know (docs/saga.md, "Two passes of one saga"), pinned on
// a DTM server of its own (other test files call /resetCronTime on the shared one): DTM hands a
// saga to its cron once the saga's retry interval has passed since the pass began, even while that
// first pass still runs, so two passes can run the same saga at once. When one pass records a step
// failed and rolls back while the other pass's call of that step succeeds (the business changed in
// between), the other pass goes on to the next step: DTM refuses to store its result ("storage:
// NotFound": the saga is no longer submitted), but the step ran, and DTM's rollback never
// compensates it. Found by barrier.spec's parallel transfers, which created money once in a run
// under load (a cron pass started by another file's /resetCronTime): DTM's log showed both passes.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { FinalResult } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { branchLines, latch } from '../support/fixtures.js';
import { harness, type DtmQueryAnswer } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, type RunningDtm } from '../support/services/dtm.js';
import { runDirFrom, waitUntil } from '../support/services/process.js';

let dtm: RunningDtm;
let recorder: Recorder;
let app: DtmTestApp;

beforeAll(async () => {
  // RequestTimeout 10: the first pass's call of step 1 is held until the second pass calls it (DTM's cron polls every second)
  dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-two-passes', extraConfig: { RequestTimeout: 10 } });
  recorder = await startRecorder();
  app = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress } });
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await dtm?.process.stop();
});
beforeEach(() => recorder.reset());

/** DTM's global status of `gid`, as its /query answers it. */
async function statusOf(gid: string): Promise<string | undefined> {
  const answer = (await (await fetch(`${dtm.info.serverUrl}/query?gid=${gid}`)).json()) as DtmQueryAnswer;
  return answer.transaction?.status;
}

describe('DTM v1.19 running one saga in two passes at once', () => {
  it("a pass that rolls back and a pass whose call of the same step succeeded: the second goes on to step 2, which runs, is not recorded, and is never compensated; the saga ends failed", async () => {
    const gid = await app.client.generateGid();
    const second = latch();
    let calls = 0;
    recorder.handle('/Step1', async () => {
      if (++calls === 1) {
        // the submit's pass: FAILURE, once the cron's pass has called this step too
        await second.wait();
        return 409;
      }
      second.open();
      // the cron's pass: success, once the first pass has recorded the failure and DTM is rolling back
      await waitUntil('DTM rolling the saga back', async () => (await statusOf(gid)) !== 'submitted', { timeoutMs: 8000, intervalMs: 20 });
      return 200;
    });
    // retryInterval 1: DTM's cron may take the saga 1 s after the submit, whatever its first pass is doing
    const final = (await app.client
      .newSaga(gid, { retryInterval: 1 })
      .add(recorder.urlFor('/Step1'), recorder.urlFor('/Undo1'), { n: 1 })
      .add(recorder.urlFor('/Step2'), recorder.urlFor('/Undo2'), { n: 2 })
      .submitAndWait({ timeout: 30 })) as FinalResult;

    expect(final.status).toBe('failed');
    expect(recorder.callsTo('/Step1', gid).map((c) => c.status)).toEqual([409, 200]); // in the order answered
    // step 2 ran (the recorder answered it 200) after the rollback began ...
    await recorder.waitForCalls('/Step2', 1, { gid, timeoutMs: 5000 });
    expect(recorder.callsTo('/Step2', gid).map((c) => c.status)).toEqual([200]);
    // ... DTM did not record it, so its rollback undid step 1 only
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action failed', '02 compensate prepared', '02 action prepared']);
    expect(recorder.callsTo('/Undo1', gid).length).toBeGreaterThanOrEqual(1);
    expect(recorder.callsTo('/Undo2', gid)).toEqual([]);
  });
});
