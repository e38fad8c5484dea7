// TCC and XA global transactions through DtmClient and TransactionHelper, against the real DTM
// server, DtmClient talking HTTP and gRPC to DTM (the same scenarios). The XA resource managers
// are recorder handlers that register their branch with DTM the way DTM's Go SDK does
// (registerBranch with the phase-2 target, before answering the action).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { DtmClient, DtmFailureError, DtmGidInUseError, DtmOngoingError, DtmOutcomeUnknownError, DtmUsageError, resolveDtmConfig, type FinalResult, type Tcc, type Xa } from 'nestjs-dtm';
import { branchLines, firstCalls, latch, PROTOCOLS, sleep, useDtmAppWithRecorder } from '../support/fixtures.js';
import { dtmPost, harness, newGid, queryTrans, triggerCron, waitForTransStatus, type DtmTransRecord } from '../support/harness.js';
import { expectFirstLookAtTimeout, FIRST_LOOK_BOUND_MS } from '../support/first-look.js';
import { startRecorder, type RecordedCall, type Recorder } from '../support/recorder.js';
import { xaResourceManager } from '../support/xa-resource-manager.js';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { startTrap } from '../support/trap.js';

/**
 * DTM's calls of one branch, as the protocol has them: at least one (a cron pass, which another
 * file's /resetCronTime can start at any moment, may call the branch again while DTM's own pass
 * calls it), each made at or after `notBefore` when given.
 */
function expectCalledByDtm(calls: RecordedCall[], notBefore?: number): void {
  expect(calls.length).toBeGreaterThanOrEqual(1);
  if (notBefore !== undefined) for (const call of calls) expect(call.at).toBeGreaterThanOrEqual(notBefore);
}

/** Two TCC / XA transactions raced on one gid: the second refused before its body ran (DtmGidInUseError, DTM holding the first prepared), the first untouched. */
function expectSecondRefused(gid: string, second: unknown, secondRan: boolean, firstError: unknown): void {
  expect(second).toBeInstanceOf(DtmGidInUseError);
  expect(second).toMatchObject({ gid, currentStatus: 'prepared' });
  expect(secondRan).toBe(false);
  expect(firstError).toBeUndefined();
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const fx = useDtmAppWithRecorder(protocol);

  describe('TCC', () => {
    it('a body that outlasts timeoutToFail: DTM rolls the transaction back meanwhile (aborting), and the refused submit is a DtmFailureError, never read as submitted', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/SlowCancel', 425); // DTM keeps it aborting while the Cancel answers ONGOING
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/SlowTry'), fx.target('/SlowConfirm'), fx.target('/SlowCancel'));
          await new Promise((resolve) => setTimeout(resolve, 1500)); // past timeoutToFail
          await triggerCron();
          await fx.recorder.waitForCalls('/SlowCancel', 1, { gid, timeoutMs: 20_000 });
          return 'done';
        }, { timeoutToFail: 1, retryInterval: 60 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmFailureError);
      expect((error as Error).message).toContain("current status 'aborting'");
      expect(fx.recorder.callsTo('/SlowConfirm', gid)).toHaveLength(0);
      await fx.client.forceStop(gid);
    });

    it('tccGlobalTransactionAndWait (waitResult), a body that outlasts timeoutToFail: DTM rolled the TCC back ("failed") before the submit, which it refuses; resolves failed with DTM\'s reason, not DtmFailureError', async () => {
      const gid = await fx.client.generateGid();
      const outcome = await fx.client
        .tccGlobalTransactionAndWait(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/LateTry'), fx.target('/LateConfirm'), fx.target('/LateCancel'));
          await new Promise((resolve) => setTimeout(resolve, 1500)); // past timeoutToFail
          await triggerCron();
          await waitForTransStatus(gid, 'failed');
          return 'done';
        }, { timeoutToFail: 1, retryInterval: 60, waitResult: true }, { timeout: 20 })
        .catch((e: unknown) => e);
      expect(outcome).toMatchObject({ gid, status: 'failed', rollbackReason: 'Timeout after 1 seconds', result: 'done' });
      expect(branchLines(outcome as FinalResult)).toEqual(['01 cancel succeed', '01 confirm prepared']);
      expectCalledByDtm(fx.recorder.callsTo('/LateCancel', gid));
      expect(fx.recorder.callsTo('/LateConfirm', gid)).toHaveLength(0);
    });

    it('tccGlobalTransactionAndWait, a body that outlasts timeoutToFail: DTM is rolling the TCC back ("aborting") when it refuses the submit; the wait resolves failed once the Cancel succeeded, not DtmFailureError', async () => {
      const gid = await fx.client.generateGid();
      // DTM keeps it aborting while the Cancel answers ONGOING, until the test lets it succeed: a retry of DTM's
      // (retryInterval 1, or at once after another test file's /resetCronTime) cannot end the rollback before the submit
      let cancelSucceeds = false;
      fx.recorder.handle('/AbCancel', () => (cancelSucceeds ? 200 : 425));
      const outcome = await fx.client
        .tccGlobalTransactionAndWait(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/AbTry'), fx.target('/AbConfirm'), fx.target('/AbCancel'));
          await new Promise((resolve) => setTimeout(resolve, 1500)); // past timeoutToFail
          await triggerCron();
          await fx.recorder.waitForCalls('/AbCancel', 1, { gid, timeoutMs: 20_000 });
          expect((await queryTrans(gid)).transaction?.status).toBe('aborting');
          setTimeout(() => (cancelSucceeds = true), 1000); // after the submit, which follows the body at once
          return 'done';
        }, { timeoutToFail: 1, retryInterval: 1 }, { timeout: 30 })
        .catch((e: unknown) => e);
      expect(outcome).toMatchObject({ gid, status: 'failed', rollbackReason: 'Timeout after 1 seconds', result: 'done' });
      // ONGOING until let succeed (once or more: DTM's retries meanwhile), then the one success
      const cancels = fx.recorder.callsTo('/AbCancel', gid).map((c) => c.status);
      expect([cancels.length >= 2, cancels.at(-1), cancels.slice(0, -1).every((status) => status === 425)]).toEqual([true, 200, true]);
      expect(fx.recorder.callsTo('/AbConfirm', gid)).toHaveLength(0);
    });

    it('confirms every branch after the Tries succeeded; Tries get the query DTM SDKs send', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/InventoryTry', { status: 200, body: { reserved: 2 } });
      const answers = await fx.client.tccGlobalTransaction(gid, async (tcc) => [
        await tcc.callBranch(fx.payload({ sku: 'a', qty: 2 }), fx.target('/InventoryTry'), fx.target('/InventoryConfirm'), fx.target('/InventoryCancel')),
        await tcc.callBranch(fx.payload({ amount: 10 }), fx.target('/PaymentTry'), fx.target('/PaymentConfirm'), fx.target('/PaymentCancel')),
      ]);
      expect(fx.answerBody(answers[0])).toEqual({ reserved: 2 });

      const final = await fx.client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual([
        '01 cancel prepared',
        '01 confirm succeed',
        '02 cancel prepared',
        '02 confirm succeed',
      ]);
      const [tryCall] = fx.recorder.callsTo('/InventoryTry', gid);
      expect(tryCall).toMatchObject({
        method: fx.method('POST'),
        query: { gid, trans_type: 'tcc', branch_id: '01', op: 'try', dtm: fx.dtm },
        body: '{"sku":"a","qty":2}',
      });
      // DTM confirms from the last branch to the first, with the registered payload as body
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm').map((c) => [c.path, c.body]))).toEqual([
        ['/PaymentConfirm', '{"amount":10}'],
        ['/InventoryConfirm', '{"sku":"a","qty":2}'],
      ]);
    });

    it('a Try answering FAILURE aborts: every registered branch is cancelled and the reason recorded', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/PaymentTry', { status: 409, body: { message: 'card declined' } });
      const run = fx.client.tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch(fx.payload({ sku: 'a' }), fx.target('/InventoryTry'), fx.target('/InventoryConfirm'), fx.target('/InventoryCancel'));
        await tcc.callBranch(fx.payload({ amount: 10 }), fx.target('/PaymentTry'), fx.target('/PaymentConfirm'), fx.target('/PaymentCancel'));
      });
      await expect(run).rejects.toBeInstanceOf(DtmFailureError);

      const final = await fx.client.waitForFinal(gid);
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain('card declined');
      expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'prepared', 'succeed', 'prepared']);
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'cancel').map((c) => c.path))).toEqual(['/PaymentCancel', '/InventoryCancel']);
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm')).toHaveLength(0);
    });

    it("a body that throws a value String() cannot convert (Object.create(null)): aborted at once with a readable rollback reason, the value rethrown as it is, DTM cancels (before: the module's reason for DTM threw a TypeError, no abort was sent and the caller got that TypeError)", async () => {
      const gid = await fx.client.generateGid();
      const thrown = Object.create(null) as object;
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/OddTry'), fx.target('/OddConfirm'), fx.target('/OddCancel'));
          throw thrown;
        })
        .catch((e: unknown) => e);
      expect(error).toBe(thrown);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect([final.status, final.rollbackReason]).toEqual(['failed', 'a value that cannot be converted to text']);
      expectCalledByDtm(fx.recorder.callsTo('/OddCancel', gid));
      expect(fx.recorder.callsTo('/OddConfirm', gid)).toHaveLength(0);
    });

    it("a Try answering ONGOING: callBranch's DtmOngoingError says in words which branch answered what (before, over HTTP: the raw JSON body, {\"dtm_result\":\"ONGOING\",\"message\":...}); DTM rolls the TCC back with that reason", async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/PendingTry', { status: 425, body: { dtm_result: 'ONGOING', message: 'stock review pending' } });
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/PendingTry'), fx.target('/PendingConfirm'), fx.target('/PendingCancel'));
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmOngoingError);
      const message = `the branch ${fx.target('/PendingTry')} answered ONGOING (${protocol === 'grpc' ? 'gRPC status 9' : 'HTTP 425'}): not finished yet, saying: stock review pending`;
      expect((error as Error).message).toBe(message);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect([final.status, final.rollbackReason]).toEqual(['failed', message]);
      expect(fx.recorder.callsTo('/PendingConfirm', gid)).toHaveLength(0);
    });

    it('a body that catches a Try\'s FAILURE and returns is aborted, not submitted: DtmUsageError naming the swallowed failure; DTM cancels, confirms nothing (the Try of the failed branch reserved nothing)', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/CaughtTry', { status: 409, body: { message: 'card declined' } });
      let swallowed: unknown;
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ sku: 'a' }), fx.target('/KeptTry'), fx.target('/KeptConfirm'), fx.target('/KeptCancel'));
          await tcc.callBranch(fx.payload({ amount: 10 }), fx.target('/CaughtTry'), fx.target('/CaughtConfirm'), fx.target('/CaughtCancel')).catch((e: unknown) => {
            swallowed = e;
          });
          return 'went on';
        })
        .catch((e: unknown) => e);
      expect(swallowed).toBeInstanceOf(DtmFailureError);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toMatch(/went on after the Try of its branch 02 failed \(.*card declined.*\)/);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm')).toHaveLength(0);
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'cancel').map((c) => c.path))).toEqual(['/CaughtCancel', '/KeptCancel']);
    });

    it('a body that returns while a callBranch() it started is still under way (not awaited), whose Try then answers FAILURE: not submitted (DTM would confirm the failed Try), DtmUsageError naming the call; aborted once the Try answered, DTM cancels, confirms nothing', async () => {
      const gid = await fx.client.generateGid();
      const started = latch();
      const returned = latch();
      fx.recorder.handle('/LooseTry', async () => {
        started.open();
        await returned.wait();
        await sleep(600); // answers well after the body returned
        return { status: 409, body: { message: 'out of stock' } };
      });
      let loose: Promise<unknown> | undefined;
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          loose = tcc.callBranch(fx.payload({ sku: 'a' }), fx.target('/LooseTry'), fx.target('/LooseConfirm'), fx.target('/LooseCancel')).catch((e: unknown) => e);
          await started.wait(); // registered, its Try under way
          returned.open();
          return 'returned early';
        })
        .catch((e: unknown) => e);
      expect(await loose).toBeInstanceOf(DtmFailureError);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(`the body of tcc ${gid} returned while 1 callBranch() it started was still under way (not awaited)`);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm')).toHaveLength(0);
      const [tryCall] = fx.recorder.callsTo('/LooseTry', gid);
      const cancels = fx.recorder.callsTo('/LooseCancel', gid);
      expectCalledByDtm(cancels, tryCall.answeredAt); // the Cancel comes after the Try answered
    });

    it('await Promise.all of two callBranch(), the first Try answering FAILURE at once while the second Try still runs: the abort waits for the second Try to answer, so its Cancel never overtakes it (a Try run after its Cancel would reserve for good)', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/FastTry', { status: 409, body: { message: 'card declined' } });
      const started = latch();
      fx.recorder.handle('/SlowTry', async (call) => {
        started.open();
        await fx.recorder.waitForCalls('/FastTry', 1, { gid: call.query.gid });
        await sleep(600); // answers well after the first Try's FAILURE
        return 200;
      });
      const error = await fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await Promise.all([
            tcc.callBranch(fx.payload({ n: 2 }), fx.target('/SlowTry'), fx.target('/SlowConfirm'), fx.target('/SlowCancel')),
            started.wait().then(() => tcc.callBranch(fx.payload({ n: 1 }), fx.target('/FastTry'), fx.target('/FastConfirm'), fx.target('/FastCancel'))),
          ]);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmFailureError);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      const [slowTry] = await fx.recorder.waitForCalls('/SlowTry', 1, { gid });
      const slowCancels = fx.recorder.callsTo('/SlowCancel', gid);
      expectCalledByDtm(slowCancels, slowTry.answeredAt);
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm')).toHaveLength(0);
    });

    it('callBranch() on the Tcc of a transaction whose body ended (kept past tccGlobalTransaction): DtmUsageError, nothing sent (not DTM\'s refusal of the registration read as the branch\'s FAILURE)', async () => {
      const gid = await fx.client.generateGid();
      let kept: Tcc | undefined;
      await fx.client.tccGlobalTransaction(gid, async (tcc) => {
        kept = tcc;
        await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/EndTry'), fx.target('/EndConfirm'), fx.target('/EndCancel'));
      });
      expect((await fx.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
      const late = await kept!.callBranch(fx.payload({ n: 2 }), fx.target('/LateTry'), fx.target('/LateConfirm'), fx.target('/LateCancel')).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(DtmUsageError);
      expect((late as Error).message).toContain(`tcc ${gid}: callBranch() after the body of the transaction ended`);
      expect(branchLines(await fx.client.waitForFinal(gid))).toEqual(['01 cancel prepared', '01 confirm succeed']);
      expect(fx.recorder.callsTo('/LateTry', gid)).toHaveLength(0);
    });

    it('two tccGlobalTransaction() racing on one gid (DTM v1.19 takes a prepare of a gid it holds prepared): the second is DtmGidInUseError before its body runs, sending nothing more; not a submit confirming the first one\'s branch 01 while the first one\'s branch 02 is refused', async () => {
      const gid = await fx.client.generateGid();
      let secondRan = false;
      let firstError: unknown;
      const held = latch();
      const first = fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/ATry'), fx.target('/AConfirm'), fx.target('/ACancel'));
          await held.wait(); // the second transaction, under the same gid, runs here
          await tcc.callBranch(fx.payload({ n: 2 }), fx.target('/A2Try'), fx.target('/A2Confirm'), fx.target('/A2Cancel'));
          return 'first';
        })
        .catch((e: unknown) => (firstError = e));
      await held.reached;
      const second = await fx.client
        .tccGlobalTransaction(gid, async () => {
          secondRan = true;
          return 'second';
        })
        .catch((e: unknown) => e);
      held.open();
      await first;
      expectSecondRefused(gid, second, secondRan, firstError);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '02 cancel prepared', '02 confirm succeed']);
      expectCalledByDtm(fx.recorder.callsTo('/AConfirm', gid));
      expectCalledByDtm(fx.recorder.callsTo('/A2Confirm', gid));
    });

    it('nested: a Try registers and tries sub-branches 0101 and 0102 through the module\'s DTM server; DTM confirms all three', async () => {
      fx.recorder.handle('/OrderTry', async (call) => {
        const branch = { gid: call.query.gid, transType: call.query.trans_type, branchId: call.query.branch_id, op: call.query.op, dtm: call.query.dtm, headers: {} };
        const sub = fx.client.tccFromBranch(branch);
        for (const sku of ['a', 'b']) await sub.callBranch(fx.payload({ sku }), fx.target('/StockTry'), fx.target('/StockConfirm'), fx.target('/StockCancel'));
        return 200;
      });
      const gid = await fx.client.generateGid();
      await fx.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(fx.payload({ order: 1 }), fx.target('/OrderTry'), fx.target('/OrderConfirm'), fx.target('/OrderCancel')));

      const final = await fx.client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed', '0102 cancel prepared', '0102 confirm succeed']);
      expect(fx.recorder.callsTo('/StockTry', gid).map((c) => [c.query.branch_id, c.query.dtm, c.body])).toEqual([
        ['0101', fx.dtm, '{"sku":"a"}'],
        ['0102', fx.dtm, '{"sku":"b"}'],
      ]);
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'confirm').map((c) => `${c.path} ${c.body}`))).toEqual([
        '/StockConfirm {"sku":"b"}',
        '/StockConfirm {"sku":"a"}',
        '/OrderConfirm {"order":1}',
      ]);
    });

    it('nested TCC from a Confirm (op confirm) is refused up front with a DtmUsageError saying it runs in a Try, not with DTM\'s refusal of the registration', async () => {
      const refused: unknown[] = [];
      fx.recorder.handle('/OrderConfirm', async (call) => {
        const branch = { gid: call.query.gid, transType: call.query.trans_type, branchId: call.query.branch_id, op: call.query.op, dtm: fx.dtm, headers: {} };
        try {
          await fx.client.tccFromBranch(branch).callBranch(fx.payload({ sku: 'a' }), fx.target('/StockTry'), fx.target('/StockConfirm'), fx.target('/StockCancel'));
        } catch (err) {
          refused.push(err);
        }
        return 200;
      });
      const gid = await fx.client.generateGid();
      await fx.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(fx.payload({ order: 1 }), fx.target('/OrderTry'), fx.target('/OrderConfirm'), fx.target('/OrderCancel')));

      const final = await fx.client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      // one refusal per Confirm DTM sent: at least one (a cron pass another file's /resetCronTime starts may confirm again)
      expect(refused.length).toBeGreaterThanOrEqual(1);
      for (const error of refused) {
        expect(error).toBeInstanceOf(DtmUsageError);
        expect((error as Error).message).toContain('op confirm');
      }
      expect(fx.recorder.callsTo('/StockTry', gid)).toHaveLength(0);
    });

    it('nested, the call naming another DTM server: sub-branches are registered with and tried through the configured one; nothing reaches the named one', async () => {
      const trap = await startTrap();
      try {
        const gid = await fx.client.generateGid();
        await fx.client.tccGlobalTransaction(gid, async () => {
          // the @BranchContext() of a Try whose caller named another DTM server
          const branch = { gid, transType: 'tcc', branchId: '01', op: 'try', dtm: fx.protocol === 'grpc' ? trap.address : trap.url, headers: {} };
          const sub = fx.client.tccFromBranch(branch);
          await sub.callBranch(fx.payload({ sku: 'a' }), fx.target('/StockTry'), fx.target('/StockConfirm'), fx.target('/StockCancel'));
        });
        const final = await fx.client.waitForFinal(gid);
        expect(final.status).toBe('succeed');
        expect(branchLines(final)).toEqual(['0101 cancel prepared', '0101 confirm succeed']);
        expect(fx.recorder.callsTo('/StockTry', gid).map((c) => [c.query.branch_id, c.query.dtm, c.body])).toEqual([['0101', fx.dtm, '{"sku":"a"}']]);
        expect([trap.connections, trap.received]).toEqual([0, '']);
      } finally {
        await trap.close();
      }
    });

    it('a gid DTM already finished: executeTcc with waitForFinal throws DtmGidInUseError, not the old outcome; no Try runs', async () => {
      const branch = (name: string, data: object) => ({ try: fx.target(`/${name}Try`), confirm: fx.target(`/${name}Confirm`), cancel: fx.target(`/${name}Cancel`), data: fx.payload(data) });
      const gid = await fx.helper.mustGenGid();
      expect((await fx.helper.executeTcc(gid, [branch('Inventory', { sku: 'c' })], { waitForFinal: true })).final?.status).toBe('succeed');
      const before = branchLines((await fx.client.query(gid))!);

      const reused = fx.helper.executeTcc(gid, [branch('Payment', { amount: 9 })], { waitForFinal: true });
      await expect(reused).rejects.toBeInstanceOf(DtmGidInUseError);
      await expect(reused).rejects.toMatchObject({ gid, currentStatus: 'succeed' });
      expect(fx.recorder.callsTo('/PaymentTry')).toEqual([]);
      expect(branchLines((await fx.client.query(gid))!)).toEqual(before);
    });

    it('TransactionHelper.executeTcc returns the Try answers, and a rollback as a result with waitForFinal', async () => {
      const ok = await fx.helper.mustGenGid();
      fx.recorder.answer('/InventoryTry', { status: 200, body: { reserved: 1 } });
      const branch = (name: string, data: object) => ({
        try: fx.target(`/${name}Try`),
        confirm: fx.target(`/${name}Confirm`),
        cancel: fx.target(`/${name}Cancel`),
        data: fx.payload(data),
      });
      const done = await fx.helper.executeTcc(ok, [branch('Inventory', { sku: 'b' }), branch('Payment', { amount: 3 })], { waitForFinal: true });
      expect(done.answers.map((a) => fx.answerBody(a))).toEqual([{ reserved: 1 }, { result: 'recorded' }]);
      expect(done.final?.status).toBe('succeed');

      const bad = await fx.helper.mustGenGid();
      fx.recorder.answer('/PaymentTry', 409);
      const rolledBack = await fx.helper.executeTcc(bad, [branch('Inventory', { sku: 'b' }), branch('Payment', { amount: 3 })], { waitForFinal: true });
      expect(rolledBack.final?.status).toBe('failed');
      expect(rolledBack.final?.rollbackReason).toContain('recorder answered 409');
    });

    it('TransactionHelper.executeTcc: a target Try without its cancel (or confirm) is refused before anything is sent, as tcc.callBranch refuses it', async () => {
      const gid = await fx.helper.mustGenGid();
      fx.recorder.answer('/Try2', 409);
      const full = { try: fx.target('/Try2'), confirm: fx.target('/Confirm2'), cancel: fx.target('/Cancel2'), data: fx.payload({ n: 2 }) };
      const noCancel = fx.helper.executeTcc(gid, [{ try: fx.target('/Try1'), confirm: fx.target('/Confirm1'), data: fx.payload({ n: 1 }) }, full], { waitForFinal: { timeout: 10 } });
      await expect(noCancel).rejects.toThrow(new DtmUsageError(`executeTcc: branch 0 (try ${JSON.stringify(fx.target('/Try1'))}) has no cancel: give both confirm and cancel (strings; '' only when there is nothing to undo), or neither with try naming this app's TCC branch; else the Try's work would never be cancelled. Nothing was sent`));
      await expect(fx.helper.executeTcc(gid, [full, { try: fx.target('/Try1'), cancel: fx.target('/Cancel1') }])).rejects.toThrow(/^executeTcc: branch 1 .* has no confirm: /);
      await expect(fx.helper.executeTcc(gid, [full, { try: fx.target('/Try1') }])).rejects.toThrow(/^executeTcc: branch 1 .* has no confirm and cancel: /);
      // nothing reached DTM nor a branch
      expect((await queryTrans(gid)).transaction).toBeNull();
      expect(fx.recorder.callsFor(gid)).toEqual([]);
      // '' says there is nothing to undo: accepted
      const empty = await fx.helper.executeTcc(gid, [{ try: fx.target('/Try1'), confirm: fx.target('/Confirm1'), cancel: '', data: fx.payload({ n: 1 }) }], { waitForFinal: true });
      expect(empty.final?.status).toBe('succeed');
    });

    it.each([
      ['a negative timeout', { timeout: -1 }],
      ['a timeout read from the environment as text', { timeout: '30' as unknown as number }],
      ['a pollInterval of 0', { pollInterval: 0 }],
    ])('tccGlobalTransactionAndWait / xaGlobalTransactionAndWait / saga submitAndWait / execute* with waitForFinal, %s as wait option: DtmUsageError before anything is sent (not after DTM took the submit, which DTM then confirms while the caller reads "bad input")', async (_case, wait) => {
      const body = async (tcc: Tcc) => tcc.callBranch(fx.payload({ n: 1 }), fx.target('/WaitTry'), fx.target('/WaitConfirm'), fx.target('/WaitCancel'));
      const calls: [string, (gid: string) => Promise<unknown>][] = [
        ['tccGlobalTransactionAndWait', (gid) => fx.client.tccGlobalTransactionAndWait(gid, body, {}, wait)],
        ['xaGlobalTransactionAndWait', (gid) => fx.client.xaGlobalTransactionAndWait(gid, async (xa) => xa.callBranch(fx.payload({ n: 1 }), fx.target('/WaitXa')), {}, wait)],
        ['executeTcc', (gid) => fx.helper.executeTcc(gid, [{ try: fx.target('/WaitTry'), confirm: fx.target('/WaitConfirm'), cancel: fx.target('/WaitCancel'), data: fx.payload({ n: 1 }) }], { waitForFinal: wait })],
        ['executeXa', (gid) => fx.helper.executeXa(gid, [{ action: fx.target('/WaitXa'), data: fx.payload({ n: 1 }) }], { waitForFinal: wait })],
        ['saga submitAndWait', (gid) => fx.client.newSaga(gid).add(fx.target('/WaitAction'), fx.target('/WaitCompensate'), fx.payload({ n: 1 })).submitAndWait(wait)],
        ['executeSaga', (gid) => fx.helper.executeSaga(gid, [{ action: fx.target('/WaitAction'), compensate: fx.target('/WaitCompensate'), data: fx.payload({ n: 1 }) }], { waitForFinal: wait })],
      ];
      for (const [name, call] of calls) {
        const gid = await fx.client.generateGid();
        const error = await call(gid).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect([name, error]).toEqual([name, expect.any(DtmUsageError)]);
        expect([name, (await queryTrans(gid)).transaction]).toEqual([name, null]);
        expect([name, fx.recorder.callsFor(gid)]).toEqual([name, []]);
      }
    });
  });

  describe('TCC timeouts', () => {
    it('timeoutToFail (3 s) below DTM\'s retry interval, none set: a TCC whose app died after the Try is cancelled after its timeout, not after 10 s', async () => {
      const gid = await fx.client.generateGid();
      const started = Date.now();
      let recorded: DtmTransRecord | null = null;
      const hung = fx.client
        .tccGlobalTransaction(gid, async (tcc) => {
          await tcc.callBranch(fx.payload({ n: 1 }), fx.target('/Try'), fx.target('/Confirm'), fx.target('/Cancel'));
          recorded = (await queryTrans(gid)).transaction; // before DTM's first look
          await fx.recorder.waitForCalls('/Cancel', 1, { gid, timeoutMs: 20_000 }); // the body outlives the timeout, as a dead app would
        }, { timeoutToFail: 3 })
        .catch(() => undefined);
      const [cancel] = await fx.recorder.waitForCalls('/Cancel', 1, { gid, timeoutMs: 20_000 });
      await hung;
      expectFirstLookAtTimeout(recorded, gid);
      // DTM's SQL stores keep create_time in whole seconds (datetime), from which DTM counts the timeout: up to 1 s early there
      expect(cancel.at - started).toBeGreaterThanOrEqual(harness().dtm.store === 'mysql' ? 1500 : 2500);
      expect(cancel.at - started).toBeLessThan(FIRST_LOOK_BOUND_MS);
      expect((await fx.client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
      expect(fx.recorder.callsTo('/Confirm', gid)).toHaveLength(0);
    });
  });

  describe('TCC with waitResult: DTM answers the submit after its first round of Confirms', () => {
    /**
     * Once DTM put its next look at `gid` off after a branch's retryable error (its backoff: retry_interval 1
     * doubled, next_cron_interval 2), a cron pass now (triggerCron): DTM retries the branch within a cron tick,
     * not 2 s and a tick later. Gives up after 10 s (DTM's own retry then comes as it would).
     */
    async function retrySoonAfterBackoff(gid: string): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        if (((await queryTrans(gid)).transaction?.next_cron_interval ?? 0) >= 2) return triggerCron();
        await sleep(50);
      }
    }

    /** A TCC of one branch under `gid` whose Try answers, with waitResult (DTM retries a Confirm every second). */
    const oneBranch = (prefix: string) => (tcc: Tcc) =>
      tcc.callBranch(fx.payload({ n: 1 }), fx.target(`/${prefix}Try`), fx.target(`/${prefix}Confirm`), fx.target(`/${prefix}Cancel`)).then(() => 'tried');

    // DTM answers a retryable branch error as HTTP 500 / gRPC UNKNOWN (dtmsvr/trans_type_tcc.go ProcessOnce returns it,
    // client/dtmgrpc/type.go DtmError2GrpcError passes a plain error through), after it stored the TCC submitted
    it('a Confirm answering a retryable error once: tccGlobalTransactionAndWait waits and resolves succeed, DTM retried the Confirm', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/WrConfirm', 500, 200);
      const retried = retrySoonAfterBackoff(gid);
      const outcome = await fx.client.tccGlobalTransactionAndWait(gid, oneBranch('Wr'), { waitResult: true, retryInterval: 1 }, { timeout: 30 });
      await retried;
      expect(outcome).toMatchObject({ gid, status: 'succeed', result: 'tried' });
      expect(fx.recorder.callsTo('/WrConfirm', gid).length).toBeGreaterThanOrEqual(2);
    });

    it('a Confirm answering a retryable error once: tccGlobalTransaction throws DtmOutcomeUnknownError (DTM has it: never run it again) saying DTM took the submit and holds it submitted, not a bare DtmServerError nor "may not have reached DTM ... prepared"; DTM confirms', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/WrConfirm', 500, 200);
      const error = await fx.client.tccGlobalTransaction(gid, oneBranch('Wr'), { waitResult: true, retryInterval: 1 }).catch((e: unknown) => e);
      await triggerCron(); // DTM stored its retry (2 s out) before it answered: it retries now
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((error as DtmOutcomeUnknownError).gid).toBe(gid);
      expect((error as DtmOutcomeUnknownError).lastStatus).toBe('submitted');
      expect((error as Error).message).toMatch(new RegExp(`^DTM took the submit of ${gid} and holds it "submitted", but its first round did not finish`));
      expect((await fx.client.waitForFinal(gid, { timeout: 30 })).status).toBe('succeed');
    });

    // DTM answers a Confirm's ONGOING as 425 / FAILED_PRECONDITION to the submit (dtmsvr/trans_process.go), and confirms it later
    it('a Confirm answering ONGOING once: tccGlobalTransactionAndWait waits for the outcome (succeed), not DtmOngoingError', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/OgConfirm', 425, 200);
      const outcome = await fx.client.tccGlobalTransactionAndWait(gid, oneBranch('Og'), { waitResult: true, retryInterval: 1 }, { timeout: 30 });
      expect(outcome).toMatchObject({ gid, status: 'succeed', result: 'tried' });
      expect(firstCalls(fx.recorder.callsTo('/OgConfirm', gid).map((c) => c.status))).toEqual([425, 200]);
    });

    it('a Confirm answering ONGOING once: tccGlobalTransaction throws DtmOngoingError saying DTM goes on with it (not a bare "ONGOING"); DTM confirms', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/OgConfirm', 425, 200);
      const error = await fx.client.tccGlobalTransaction(gid, oneBranch('Og'), { waitResult: true, retryInterval: 1 }).catch((e: unknown) => e);
      await triggerCron(); // DTM stored its retry (1 s out) before it answered: it retries now
      expect(error).toBeInstanceOf(DtmOngoingError);
      expect((error as Error).message).toMatch(new RegExp(`^${gid} did not succeed in DTM's first round \\(.*\\) and is "submitted": DTM goes on with it`));
      expect((await fx.client.waitForFinal(gid, { timeout: 30 })).status).toBe('succeed');
    });

    // with waitResult DTM runs the abort's first round of Cancels inside the abort call and answers a Cancel's error (500 / UNKNOWN) or ONGOING: it took the abort
    it.each([500, 425])('a body that throws, a Cancel answering %s once: the abort DTM took and answered with the Cancel\'s answer is not reported as a failed abort (no warning); DTM cancels', async (answer) => {
      const logger = new RecordingLogger();
      Logger.overrideLogger(logger);
      try {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/AbCancel', answer, 200);
        const bodyError = new Error('payment refused');
        const error = await fx.client.tccGlobalTransaction(gid, (tcc) => oneBranch('Ab')(tcc).then(() => Promise.reject(bodyError)), { waitResult: true, retryInterval: 1 }).catch((e: unknown) => e);
        await triggerCron(); // DTM stored its retry of the Cancel before it answered the abort: it retries now
        expect(error).toBe(bodyError);
        expect(logger.lines.filter((l) => l.includes(`abort of tcc gid=${gid}`) || l.includes(`the abort of tcc gid=${gid}`))).toEqual([]);
        expect(fx.recorder.callsTo('/AbCancel', gid).length).toBeGreaterThanOrEqual(1);
        const final = await fx.client.waitForFinal(gid, { timeout: 30 });
        expect([final.status, final.rollbackReason]).toEqual(['failed', 'payment refused']);
        expect(firstCalls(fx.recorder.callsTo('/AbCancel', gid).map((c) => c.status))).toEqual([answer, 200]);
      } finally {
        Logger.overrideLogger(false);
        Logger.overrideLogger(new Logger());
      }
    });
  });

  describe('XA (application side)', () => {
    it('commits every branch after the actions succeeded', async () => {
      fx.recorder.handle('/BankA', xaResourceManager());
      fx.recorder.handle('/BankB', xaResourceManager());
      const gid = await fx.client.generateGid();
      await fx.client.xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch(fx.payload({ amount: -30 }), fx.target('/BankA'));
        await xa.callBranch(fx.payload({ amount: 30 }), fx.target('/BankB'));
      });

      const final = await fx.client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual([
        '01 rollback prepared',
        '01 commit succeed',
        '02 rollback prepared',
        '02 commit succeed',
      ]);
      const [action] = fx.recorder.callsTo('/BankA', gid);
      expect(action.query).toMatchObject({ gid, trans_type: 'xa', branch_id: '01', op: 'action', phase2_url: fx.target('/BankA') });
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'commit').map((c) => `${c.path} ${c.method} ${c.body}`))).toEqual([
        `/BankA ${fx.method('POST')} `,
        `/BankB ${fx.method('POST')} `,
      ]);
    });

    it('rolls back the prepared branch when the second branch fails, with the reason', async () => {
      fx.recorder.handle('/BankA', xaResourceManager());
      fx.recorder.handle('/BankB', xaResourceManager({ fail: true }));
      const gid = await fx.client.generateGid();
      const run = fx.client.xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch(fx.payload({ amount: -30 }), fx.target('/BankA'));
        await xa.callBranch(fx.payload({ amount: 30 }), fx.target('/BankB'));
      });
      await expect(run).rejects.toThrow(/insufficient balance/);

      const final = await waitForTransStatus(gid, 'failed');
      expect(final.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 rollback succeed', '01 commit prepared']);
      expect(final.transaction?.rollback_reason).toContain('insufficient balance');
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'rollback').map((c) => c.path))).toEqual(['/BankA']);
    });

    it('a body that catches a failed action and returns is aborted, not submitted: DtmUsageError naming the swallowed failure; DTM rolls the prepared branch back, commits nothing', async () => {
      fx.recorder.handle('/CaughtBankA', xaResourceManager());
      fx.recorder.handle('/CaughtBankB', xaResourceManager({ fail: true }));
      const gid = await fx.client.generateGid();
      let swallowed: unknown;
      const error = await fx.client
        .xaGlobalTransaction(gid, async (xa) => {
          await xa.callBranch(fx.payload({ amount: -30 }), fx.target('/CaughtBankA'));
          await xa.callBranch(fx.payload({ amount: 30 }), fx.target('/CaughtBankB')).catch((e: unknown) => {
            swallowed = e;
          });
          return 'went on';
        })
        .catch((e: unknown) => e);
      expect(swallowed).toBeInstanceOf(DtmFailureError);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toMatch(/went on after the action of its branch 02 failed \(.*insufficient balance.*\)/);
      const final = await waitForTransStatus(gid, 'failed');
      expect(final.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 rollback succeed', '01 commit prepared']);
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'commit')).toHaveLength(0);
    });

    it('a body that returns while an xa.callBranch() it started is still under way (not awaited): not submitted (DTM would commit before the action prepared), DtmUsageError; aborted once the action answered, DTM rolls it back, commits nothing; xa.callBranch() after the body ended is refused, the action not called', async () => {
      const prepare = xaResourceManager();
      const started = latch();
      const returned = latch();
      fx.recorder.handle('/LooseBank', async (call) => {
        started.open();
        await returned.wait();
        await sleep(600); // answers well after the body returned
        return prepare(call);
      });
      const gid = await fx.client.generateGid();
      let kept: Xa | undefined;
      let loose: Promise<unknown> | undefined;
      const error = await fx.client
        .xaGlobalTransaction(gid, async (xa) => {
          kept = xa;
          loose = xa.callBranch(fx.payload({ amount: 30 }), fx.target('/LooseBank')).catch((e: unknown) => e);
          await started.wait(); // its action under way
          returned.open();
          return 'returned early';
        })
        .catch((e: unknown) => e);
      expect(await loose).not.toBeInstanceOf(Error);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(`the body of xa ${gid} returned while 1 callBranch() it started was still under way (not awaited)`);
      const final = await waitForTransStatus(gid, 'failed');
      expect(final.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 rollback succeed', '01 commit prepared']);
      expect(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'commit')).toHaveLength(0);
      const late = await kept!.callBranch(fx.payload({ amount: 1 }), fx.target('/LateBank')).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(DtmUsageError);
      expect((late as Error).message).toContain(`xa ${gid}: callBranch() after the body of the transaction ended`);
      expect(fx.recorder.callsTo('/LateBank', gid)).toHaveLength(0);
    });

    it('two xaGlobalTransaction() racing on one gid (DTM v1.19 takes a prepare of a gid it holds prepared): the second is DtmGidInUseError before its body runs, sending nothing more; the first commits both its branches', async () => {
      fx.recorder.handle('/RaceBankA', xaResourceManager());
      fx.recorder.handle('/RaceBankB', xaResourceManager());
      fx.recorder.handle('/RaceBankC', xaResourceManager());
      const gid = await fx.client.generateGid();
      let secondRan = false;
      let firstError: unknown;
      const held = latch();
      const first = fx.client
        .xaGlobalTransaction(gid, async (xa) => {
          await xa.callBranch(fx.payload({ amount: -30 }), fx.target('/RaceBankA'));
          await held.wait(); // the second transaction, under the same gid, runs here
          await xa.callBranch(fx.payload({ amount: 30 }), fx.target('/RaceBankB'));
          return 'first';
        })
        .catch((e: unknown) => (firstError = e));
      await held.reached;
      const second = await fx.client
        .xaGlobalTransaction(gid, async (xa) => {
          secondRan = true;
          await xa.callBranch(fx.payload({ amount: 1 }), fx.target('/RaceBankC'));
          return 'second';
        })
        .catch((e: unknown) => e);
      held.open();
      expect(await first).toBe('first');
      expectSecondRefused(gid, second, secondRan, firstError);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 rollback prepared', '01 commit succeed', '02 rollback prepared', '02 commit succeed']);
      expect(firstCalls(fx.recorder.callsFor(gid).filter((c) => c.query.op === 'commit').map((c) => c.path))).toEqual(['/RaceBankA', '/RaceBankB']);
      expect(fx.recorder.callsTo('/RaceBankC', gid)).toHaveLength(0);
    });

    it('xaGlobalTransactionAndWait (waitResult), a body that outlasts timeoutToFail: DTM rolled the XA back ("failed") before the submit, which it refuses; resolves failed with DTM\'s reason, not DtmFailureError', async () => {
      fx.recorder.handle('/LateBank', xaResourceManager());
      const gid = await fx.client.generateGid();
      const outcome = await fx.client
        .xaGlobalTransactionAndWait(gid, async (xa) => {
          await xa.callBranch(fx.payload({ amount: -30 }), fx.target('/LateBank'));
          await new Promise((resolve) => setTimeout(resolve, 1500)); // past timeoutToFail
          await triggerCron();
          await waitForTransStatus(gid, 'failed');
          return 'done';
        }, { timeoutToFail: 1, retryInterval: 60, waitResult: true }, { timeout: 20 })
        .catch((e: unknown) => e);
      expect(outcome).toMatchObject({ gid, status: 'failed', rollbackReason: 'Timeout after 1 seconds', result: 'done' });
      expect(branchLines(outcome as FinalResult)).toEqual(['01 rollback succeed', '01 commit prepared']);
      expect(firstCalls(fx.recorder.callsFor(gid).map((c) => c.query.op))).toEqual(['action', 'rollback']);
    });

    it('TransactionHelper.executeXa commits, waiting for the final status', async () => {
      fx.recorder.handle('/BankA', xaResourceManager());
      const gid = await fx.helper.mustGenGid();
      const result = await fx.helper.executeXa(gid, [{ action: fx.target('/BankA'), data: fx.payload({ amount: 1 }) }], { waitForFinal: { timeout: 10 } });
      expect(result.final?.status).toBe('succeed');
      expect((await queryTrans(gid)).branches.map((b) => b.status)).toEqual(['prepared', 'succeed']);
    });
  });

  describe('TransactionHelper saga and msg', () => {
    it('executeSaga and executeMsg submit what they are given', async () => {
      const sagaGid = await fx.helper.mustGenGid();
      const saga = await fx.helper.executeSaga(
        sagaGid,
        [
          { action: fx.target('/TransOut'), compensate: fx.target('/TransOutRevert'), data: fx.payload({ amount: 1 }) },
          { action: fx.target('/TransIn'), compensate: fx.target('/TransInRevert'), data: fx.payload({ amount: 1 }) },
        ],
        { waitForFinal: true },
      );
      expect(saga.final?.status).toBe('succeed');

      const msgGid = await fx.helper.mustGenGid();
      const msg = await fx.helper.executeMsg(msgGid, fx.target('/QueryPrepared'), [{ action: fx.target('/Notify'), data: fx.payload({ id: 1 }) }], {
        waitForFinal: true,
      });
      expect(msg.final?.status).toBe('succeed');
      expectCalledByDtm(fx.recorder.callsTo('/Notify', msgGid));
      await expect(fx.helper.executeSaga(sagaGid, [])).rejects.toThrow('executeSaga needs at least one branch');
      await expect(fx.helper.executeSaga(sagaGid, [null as never])).rejects.toThrow('executeSaga: branch 0 must be an object ({ action, data, ... }), got null');
      await expect(fx.helper.executeTcc(sagaGid, [{ try: fx.target('/Try'), data: {} }, 'x' as never])).rejects.toThrow('executeTcc: branch 1 must be an object');
    });
  });
});

// With waitResult DTM answers the submit once its first round of Confirms ended: a round longer than the app's
// lynx.dtm.timeout (here 2 s, a Confirm answering only once the caller gave up) leaves the caller without an answer, DTM holding the TCC submitted
describe.each(PROTOCOLS)('over %s, a TCC with waitResult whose first round outlasts lynx.dtm.timeout', (protocol) => {
  let app: DtmTestApp;
  let recorder: Recorder;
  beforeAll(async () => {
    recorder = await startRecorder();
    app = await startDtmApp({ config: { protocol, timeout: 2 } });
  });
  afterAll(async () => {
    await app?.close();
    await recorder?.close();
  });
  const target = (path: string) => (protocol === 'grpc' ? recorder.grpcTargetFor(path) : recorder.urlFor(path));

  it('tccGlobalTransaction throws DtmOutcomeUnknownError with the status DTM holds ("submitted": DTM confirms it), not "may not have reached DTM" with lastStatus prepared (which reads as rolled back at timeoutToFail); DTM confirms', async () => {
    const gid = await app.client.generateGid();
    const callerGaveUp = latch();
    // answers once the caller's call ended (its timeout, 2 s, and its query of DTM), at most 10 s later: DTM's round outlasts the timeout
    recorder.handle(
      '/SlowConfirm',
      () =>
        new Promise<number>((resolve) => {
          const timer = setTimeout(() => resolve(200), 10_000);
          void callerGaveUp.wait().then(() => {
            clearTimeout(timer);
            resolve(200);
          });
        }),
    );
    const payload = protocol === 'grpc' ? Buffer.from('{"n":1}') : { n: 1 };
    const error = await app.client
      .tccGlobalTransaction(gid, async (tcc) => tcc.callBranch(payload, target('/SlowTry'), target('/SlowConfirm'), target('/SlowCancel')), { waitResult: true, retryInterval: 1 })
      .catch((e: unknown) => e);
    callerGaveUp.open();
    expect((await queryTrans(gid)).transaction?.status).not.toBe('prepared'); // DTM took the submit
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).gid).toBe(gid);
    expect((error as DtmOutcomeUnknownError).lastStatus).toBe('submitted');
    expect((error as Error).message).toMatch(new RegExp(`^DTM took the submit of ${gid} and holds it "submitted"`));
    const final = await app.client.waitForFinal(gid, { timeout: 40 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/SlowConfirm', gid).length).toBeGreaterThanOrEqual(1);
    expect(recorder.callsTo('/SlowCancel', gid)).toHaveLength(0);
  }, 60_000);
});

describe('server_url with credentials (DTM behind a proxy with basic auth)', () => {
  it('the branches the module calls itself get server_url without its credentials in the dtm query parameter; a nested TCC from that value runs through the configured server, no warning', async () => {
    const recorder = await startRecorder();
    const serverUrl = harness().dtm.serverUrl;
    const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: serverUrl.replace('://', '://dtmuser:s3cr3tPW@') } }, {}));
    const logger = new RecordingLogger();
    Logger.overrideLogger(logger);
    try {
      recorder.handle('/OrderTry', async (call) => {
        const branch = { gid: call.query.gid, transType: call.query.trans_type, branchId: call.query.branch_id, op: call.query.op, dtm: call.query.dtm, headers: {} };
        await client.tccFromBranch(branch).callBranch({ sku: 'a' }, recorder.urlFor('/StockTry'), recorder.urlFor('/StockConfirm'), recorder.urlFor('/StockCancel'));
        return 200;
      });
      const gid = await newGid();
      await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ order: 1 }, recorder.urlFor('/OrderTry'), recorder.urlFor('/OrderConfirm'), recorder.urlFor('/OrderCancel')));
      const final = await client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
      const tries = [...recorder.callsTo('/OrderTry', gid), ...recorder.callsTo('/StockTry', gid)];
      expect(tries.map((c) => [c.query.branch_id, c.query.dtm])).toEqual([
        ['01', serverUrl],
        ['0101', serverUrl],
      ]);
      expect(JSON.stringify(recorder.callsFor(gid))).not.toContain('s3cr3tPW');
      expect(logger.lines.filter((l) => l.includes('as its DTM server'))).toEqual([]);
    } finally {
      Logger.overrideLogger(false);
      Logger.overrideLogger(new Logger());
      client.onModuleDestroy();
      await recorder.close();
    }
  });
});

describe('pins DTM v1.19: a TCC submit sent again once DTM holds the transaction submitted', () => {
  let recorder: Recorder;
  beforeAll(async () => {
    recorder = await startRecorder();
  });
  afterAll(async () => {
    await recorder?.close();
  });

  // dtmsvr/api.go svcSubmit: a submit of a gid DTM holds submitted processes the branches the submit
  // itself carries, none for TCC (or XA), so DTM records the transaction succeed and never retries the
  // Confirm that failed. This is why the module submits a TCC / XA transaction again only while DTM's
  // record shows it prepared (lib/client/dtm.client.ts, awaitFinal), never once it shows it submitted.
  it('is recorded succeed at once, the failing Confirm left prepared and never called again', async () => {
    recorder.answer('/ResubmitConfirm', 500);
    const gid = await newGid();
    expect((await dtmPost('/prepare', { gid, trans_type: 'tcc' })).status).toBe(200);
    const branch = { gid, trans_type: 'tcc', branch_id: '01', status: 'prepared', data: '{}', confirm: recorder.urlFor('/ResubmitConfirm'), cancel: recorder.urlFor('/ResubmitCancel') };
    expect((await dtmPost('/registerBranch', branch)).status).toBe(200);
    expect((await dtmPost('/submit', { gid, trans_type: 'tcc' })).status).toBe(200);
    await recorder.waitForCalls('/ResubmitConfirm', 1, { gid, timeoutMs: 20_000 });
    expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
    // the same submit again, as a caller unsure whether its first got through might send it: DTM
    // answers it at once and processes it after (no waitResult), so its record is read until it changed
    expect((await dtmPost('/submit', { gid, trans_type: 'tcc' })).status).toBe(200);
    const record = await waitForTransStatus(gid, 'succeed', 10_000);
    expect([record.transaction?.status, record.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)]).toEqual(['succeed', ['01 cancel prepared', '01 confirm prepared']]);
    // a cron pass now finds nothing to do: the Confirm is not called again
    const confirms = recorder.callsTo('/ResubmitConfirm', gid).length;
    await triggerCron();
    await sleep(2000);
    expect(recorder.callsTo('/ResubmitConfirm', gid)).toHaveLength(confirms);
    expect(recorder.callsTo('/ResubmitCancel', gid)).toHaveLength(0);
  });
});
