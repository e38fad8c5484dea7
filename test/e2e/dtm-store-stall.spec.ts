// DTM v1.19 runs a submitted saga's (or message's) branches even when storing it failed: its submit
// goes on to process the transaction after any error of the store but a unique conflict
// (dtmsvr/api.go svcSubmit, after saveNew). A Redis store that stops answering for longer than
// DTM's Redis client waits (3 s) therefore leaves branches that ran and no record: DTM answers
// success, or the caller's wait for the answer ends first, and a query says DTM holds nothing.
// Found by the fault-injection suite (chaos.spec, DTM's store stalled). This spec pins the server's
// behaviour, and that submitAndWait does not call such a submit "never got it" (which would invite a
// run under a new gid, moving the money twice): it submits the same transaction again, under the
// same gid, until DTM holds it, and resolves with what DTM then records.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, expect, it } from '@jest/globals';
import { startStallProxy, type StallProxy } from '../support/chaos/stall-proxy.js';
import { startDtmApp } from '../support/dtm-app.js';
import { harness, newGid, queryTrans } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, type RunningDtm } from '../support/services/dtm.js';
import { runDirFrom, sleep, waitUntil } from '../support/services/process.js';
import { xaResourceManager } from '../support/xa-resource-manager.js';

let store: StallProxy;
let dtm: RunningDtm;
let recorder: Recorder;

/** What this spec's DTM recorded for `gid` (its HTTP API, not through the module). */
const stored = (gid: string) => queryTrans(gid, dtm.info.serverUrl);

/**
 * Stalls DTM's store from DTM's save of the submit of `gid` (its MaySaveNewTrans script for that gid;
 * what comes before, e.g. submitAndWait's check of the gid, is answered) until DTM gave up storing it
 * (its log says so), then lets it answer again. DTM v1.19's Redis client keeps go-redis's defaults
 * (dtmsvr/storage/redis/redis.go redisGet: no timeout in DTM's config): 3 s a read, a timed-out read
 * tried again up to 3 times on another pooled connection. The store's other connections are cut as
 * the save is held, so its try again takes a new connection, whose set-up the stall also holds 3 s
 * and which is not tried again: about 6 s, not 3 s more per idle pooled connection (up to 12 s).
 */
async function stallStoreUntilSaveFails(gid: string): Promise<void> {
  store.stallWhenSent(['-- MaySaveNewTrans', `"status":"submitted"`, gid], { cutOthers: true });
  try {
    const failed = (line: string) => line.includes('MaySaveNewTrans result: i/o timeout') && line.includes(gid);
    await waitUntil(`DTM giving up storing ${gid}`, async () => readFileSync(dtm.info.logFile, 'utf8').split('\n').some(failed), { timeoutMs: 30_000, intervalMs: 50 });
  } finally {
    store.resume();
  }
}

/**
 * The TCC and XA cases' transaction options: a timeout and a retry interval longer than the test, so
 * DTM's cron never takes the transaction while it runs. DTM's first take comes a retry interval after
 * the prepare (10 s by default), which the stalled submit (about 6 to 12 s) and the module's submit
 * again can reach, and DTM v1.19 then calls a branch's phase 2 a second time while the submit's own
 * round still runs it (seen under load: an XA commit twice; DTM's cron takes a transaction whatever
 * round of it runs: dtm-two-rounds.spec.ts).
 */
const CRON_KEPT_OUT = { timeoutToFail: 60, retryInterval: 120 };

/** A gid of this spec's DTM (asked while the store answers). */
const gidOfDtm = () => newGid(dtm.info.serverUrl);

beforeAll(async () => {
  store = await startStallProxy(harness().redis!.url);
  const through = new URL(store.url);
  dtm = await startDtm(runDirFrom(harness().runDir), {
    name: 'dtm-store-stall',
    store: 'redis',
    redis: { ...harness().redis!, host: through.hostname, port: Number(through.port), url: store.url },
    redisPrefix: `{store-stall-${Date.now()}}`,
  });
  recorder = await startRecorder();
});
afterAll(async () => {
  await recorder?.close();
  await dtm?.process.stop();
  await store?.close();
});
beforeEach(() => recorder.reset());

it('pins DTM v1.19: a saga submitted while its store stalls is answered SUCCESS, its branches run, and DTM holds no record of it', async () => {
  const gid = await gidOfDtm();
  const stalled = stallStoreUntilSaveFails(gid);
  const answer = await fetch(`${dtm.info.serverUrl}/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      gid,
      trans_type: 'saga',
      steps: [{ action: recorder.urlFor('/Out'), compensate: recorder.urlFor('/OutRevert') }, { action: recorder.urlFor('/In'), compensate: recorder.urlFor('/InRevert') }],
      payloads: ['{}', '{}'],
    }),
  });
  expect(answer.status).toBe(200);
  expect(await answer.text()).toContain('SUCCESS');
  await stalled;
  await recorder.waitForCalls('/In', 1, { gid });
  await sleep(2500); // DTM's cron (every second here) would have taken a stored transaction by now
  expect(recorder.callsTo('/Out', gid)).toHaveLength(1);
  expect(recorder.callsTo('/In', gid)).toHaveLength(1);
  expect((await stored(gid)).transaction).toBeNull();
}, 45_000);

for (const [protocol, timeout] of [['http', 10], ['http', 2], ['grpc', 10]] as const) {
  it(`submitAndWait over ${protocol}, lynx.dtm.timeout ${timeout} s (${timeout > 3 ? 'DTM answers SUCCESS' : 'no answer in time'}), while DTM's store stalls: submits again under the same gid and resolves with what DTM records (succeed), not "never got it"`, async () => {
    const app = await startDtmApp({ config: { protocol, serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, timeout } });
    try {
      const gid = await gidOfDtm();
      const stalled = stallStoreUntilSaveFails(gid);
      const final = await app.client
        .newSaga(gid)
        .add(recorder.urlFor('/Out'), recorder.urlFor('/OutRevert'), {})
        .add(recorder.urlFor('/In'), recorder.urlFor('/InRevert'), {})
        .submitAndWait({ timeout: 30 });
      await stalled;
      expect(final.status).toBe('succeed');
      const record = await stored(gid);
      expect(record.transaction?.status).toBe('succeed');
      expect(record.branches.filter((b) => b.op === 'action').map((b) => b.status)).toEqual(['succeed', 'succeed']);
      // DTM's run without a record, then the one of the submit again: a branch must take a repeated call (the barrier makes it a no-op)
      expect(recorder.callsTo('/Out', gid)).toHaveLength(2);
      expect(recorder.callsTo('/In', gid)).toHaveLength(2);
      expect(recorder.callsTo('/OutRevert', gid)).toHaveLength(0);
    } finally {
      await app.close();
    }
  }, 60_000);
}

it('pins DTM v1.19: a TCC submit DTM failed to store (its store stalled) leaves the transaction prepared (DTM would roll it back at its timeout); tccGlobalTransactionAndWait submits again and DTM confirms', async () => {
  const app = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, timeout: 10 } });
  try {
    const gid = await gidOfDtm();
    let stalled: Promise<void> | undefined;
    let prepared: string | undefined;
    const outcome = await app.client.tccGlobalTransactionAndWait(
      gid,
      async (tcc) => {
        await tcc.callBranch({}, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'));
        stalled = stallStoreUntilSaveFails(gid); // the submit comes next
        void stalled.then(async () => (prepared = (await stored(gid)).transaction?.status));
      },
      CRON_KEPT_OUT,
      { timeout: 40 },
    );
    await stalled;
    expect(prepared).toBe('prepared'); // what DTM held once storing the submit had failed
    expect(outcome.status).toBe('succeed');
    expect((await stored(gid)).transaction?.status).toBe('succeed');
    expect(recorder.callsTo('/Confirm', gid)).toHaveLength(1);
    expect(recorder.callsTo('/Cancel', gid)).toHaveLength(0);
  } finally {
    await app.close();
  }
}, 60_000);

it('an XA submit DTM failed to store (its store stalled) leaves the transaction prepared; xaGlobalTransactionAndWait submits again and DTM commits the branch once, never rolls it back', async () => {
  const app = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, timeout: 10 } });
  try {
    const gid = await gidOfDtm();
    recorder.handle('/Xa', xaResourceManager({ serverUrl: dtm.info.serverUrl }));
    let stalled: Promise<void> | undefined;
    let prepared: string | undefined;
    const outcome = await app.client.xaGlobalTransactionAndWait(
      gid,
      async (xa) => {
        await xa.callBranch({}, recorder.urlFor('/Xa'));
        stalled = stallStoreUntilSaveFails(gid); // the submit comes next
        void stalled.then(async () => (prepared = (await stored(gid)).transaction?.status));
        return 'body done';
      },
      CRON_KEPT_OUT,
      { timeout: 40 },
    );
    await stalled;
    expect(prepared).toBe('prepared'); // what DTM held once storing the submit had failed
    expect([outcome.status, outcome.result]).toEqual(['succeed', 'body done']);
    const record = await stored(gid);
    expect([record.transaction?.status, record.branches.map((b) => `${b.op} ${b.status}`)]).toEqual(['succeed', ['rollback prepared', 'commit succeed']]); // DTM stores both phase-2 ops of an XA branch
    expect(recorder.callsTo('/Xa', gid).map((c) => c.query.op)).toEqual(['action', 'commit']);
  } finally {
    await app.close();
  }
}, 60_000);
