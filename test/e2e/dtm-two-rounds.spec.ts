// DTM v1.19.0 behaviour its users must know, pinned on a DTM server of its own (other test files
// call /resetCronTime on the shared one): DTM hands a transaction to its cron once its retry interval
// has passed since its round began, even while that round still runs, so two rounds can run one
// transaction at once.
// - A saga (docs/saga.md, "Two rounds of one saga at once"): when one round records a step failed
//   and rolls back while the other round's call of that step succeeds (the business changed in
//   between), the other round goes on to the next step: DTM refuses to store its result ("storage:
//   NotFound": the saga is no longer submitted), but the step ran, and DTM's rollback never
//   compensates it. Found by barrier.spec's parallel transfers, which created money once in a run
//   under load (a cron round started by another file's /resetCronTime): DTM's log showed both rounds.
// - A TCC or XA (docs/tcc.md, docs/xa.md): the cron's round calls a branch's phase 2 (Confirm,
//   commit) while the submit's round's call of it still runs. Found by dtm-store-stall.spec, whose XA
//   commit came twice in a run under load.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { FinalResult } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { branchLines, latch } from '../support/fixtures.js';
import { harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, type RunningDtm } from '../support/services/dtm.js';
import { runDirFrom, waitUntil } from '../support/services/process.js';
import { xaResourceManager } from '../support/xa-resource-manager.js';

let dtm: RunningDtm;
let recorder: Recorder;
let app: DtmTestApp;

beforeAll(async () => {
  // RequestTimeout 10: the first round's call of step 1 is held until the second round calls it (DTM's cron polls every second)
  dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-two-rounds', extraConfig: { RequestTimeout: 10 } });
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
const statusOf = async (gid: string) => (await queryTrans(gid, dtm.info.serverUrl)).transaction?.status;

describe('DTM v1.19 running one saga in two rounds at once', () => {
  it("a round that rolls back and a round whose call of the same step succeeded: the second goes on to step 2, which runs, is not recorded, and is never compensated; the saga ends failed", async () => {
    const gid = await app.client.generateGid();
    const second = latch();
    let calls = 0;
    recorder.handle('/Step1', async () => {
      if (++calls === 1) {
        // the submit's round: FAILURE, once the cron's round has called this step too
        await second.wait();
        return 409;
      }
      second.open();
      // the cron's round: success, once the first round has recorded the failure and DTM is rolling back
      await waitUntil('DTM rolling the saga back', async () => (await statusOf(gid)) !== 'submitted', { timeoutMs: 8000, intervalMs: 20 });
      return 200;
    });
    // retryInterval 1: DTM's cron may take the saga 1 s after the submit, whatever its first round is doing
    const final = (await app.client
      .newSaga(gid, { retryInterval: 1 })
      .add(recorder.urlFor('/Step1'), recorder.urlFor('/Undo1'), { n: 1 })
      .add(recorder.urlFor('/Step2'), recorder.urlFor('/Undo2'), { n: 2 })
      .submitAndWait({ timeout: 30 })) as FinalResult;

    expect(final.status).toBe('failed');
    // the cron round's call answers once its handler has seen the rollback begin: the rollback can be over before then
    await recorder.waitForCalls('/Step1', 2, { gid, timeoutMs: 5000 });
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

describe("DTM v1.19 calling a TCC's or an XA's phase 2 again while its first call still runs", () => {
  it.each(['tcc', 'xa'] as const)("%s: the cron's round takes the submitted transaction and calls the branch's phase 2 while the submit's round's call of it has not answered; DTM records the transaction done", async (type) => {
    const gid = await app.client.generateGid();
    const second = latch();
    let calls = 0;
    let overlapped: boolean | undefined;
    const phase2 = async () => {
      if (++calls === 1) {
        // the first call (the submit's round): answered once a second call came (or after 20 s, which fails the
        // test), whose round comes 1 s after the prepare, or (the cron having looked while still prepared) 10 s later
        let timer: NodeJS.Timeout | undefined;
        overlapped = await Promise.race([second.wait().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(resolve, 20_000, false)))]);
        clearTimeout(timer);
        return 200;
      }
      second.open();
      return 200;
    };
    // retryInterval 1: DTM's cron may take the transaction 1 s after its prepare, whatever a round of it is doing
    if (type === 'tcc') {
      recorder.handle('/Confirm', phase2);
      await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({}, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')), { retryInterval: 1 });
    } else {
      recorder.handle('/Xa', xaResourceManager({ serverUrl: dtm.info.serverUrl, phase2 }));
      await app.client.xaGlobalTransaction(gid, (xa) => xa.callBranch({}, recorder.urlFor('/Xa')), { retryInterval: 1 });
    }
    await waitForTransStatus(gid, 'succeed', 30_000, dtm.info.serverUrl);

    expect(overlapped).toBe(true);
    const phase2Calls = type === 'tcc' ? recorder.callsTo('/Confirm', gid) : recorder.callsTo('/Xa', gid).filter((c) => c.query.op === 'commit');
    expect(phase2Calls.length).toBeGreaterThanOrEqual(2);
    expect(recorder.callsFor(gid).filter((c) => c.query.op === (type === 'tcc' ? 'cancel' : 'rollback'))).toEqual([]);
  });
});
