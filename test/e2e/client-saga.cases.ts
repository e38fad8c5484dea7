// DtmClient sagas against the real DTM server, DtmClient talking HTTP and gRPC to DTM (the same
// scenarios); branches are the recorder app (HTTP routes, or gRPC methods). One spec file per
// protocol runs them (client-saga.spec.ts: HTTP, client-saga-grpc.spec.ts: gRPC): jest runs the two
// side by side, and most of their time is spent waiting on DTM's timers.
import { describe, expect, it } from '@jest/globals';
import { Controller, Inject, Param, Post } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { DtmClient, DtmModule, DtmFailureError, DtmGidInUseError, DtmOngoingError, DtmOutcomeUnknownError, DtmUnavailableError, DtmUsageError, type DtmProtocol, type FinalResult, type Saga } from 'nestjs-dtm';
import { startDtmApp } from '../support/dtm-app.js';
import { branchLines, branchTargets, dtmKeepsSteps, firstCalls, raceOnFreshGid, settledWithin, sleep, useDtmAppWithRecorder, type DtmAppWithRecorder } from '../support/fixtures.js';
import { harness, queryTrans, triggerCron } from '../support/harness.js';
import { freePort } from '../support/services/process.js';

/** Defines the saga scenarios of client-saga*.spec.ts, DtmClient talking `protocol` to DTM. */
export function describeClientSagas(protocol: DtmProtocol): void {
  /** transfer saga on `fx`'s recorder: TransOut then TransIn, with their compensations */
  const transferOn =
    (fx: DtmAppWithRecorder) =>
    (saga: Saga, amount = 30): Saga =>
      saga
        .add(fx.target('/TransOut'), fx.target('/TransOutRevert'), fx.payload({ amount }))
        .add(fx.target('/TransIn'), fx.target('/TransInRevert'), fx.payload({ amount }));

  describe(`DtmClient sagas over ${protocol}`, () => {
    const fx = useDtmAppWithRecorder(protocol);

    const transfer = transferOn(fx);

      it('succeeds: DTM records both steps done and the branches got the JSON payloads', async () => {
        const gid = await fx.client.generateGid();
        const final = await transfer(fx.client.newSaga(gid)).submitAndWait();

        expect(final.status).toBe('succeed');
        expect(branchLines(final)).toEqual([
          '01 compensate prepared',
          '01 action succeed',
          '02 compensate prepared',
          '02 action succeed',
        ]);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => [c.path, c.body]))).toEqual([
          ['/TransOut', '{"amount":30}'],
          ['/TransIn', '{"amount":30}'],
        ]);
      });

      it.each(['express', 'fastify'] as const)("a FinalResult a controller returns (%s): in the JSON answer each branch's data is its stored body, as text (HTTP) or base64 with dataEncoding (gRPC), not Buffer's byte array", async (adapter) => {
        @Controller('orders')
        class Orders {
          constructor(@Inject(DtmClient) private readonly dtm: DtmClient) {}

          @Post(':gid')
          transfer(@Param('gid') gid: string) {
            return transfer(this.dtm.newSaga(gid), 7).submitAndWait();
          }
        }
        const module = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { protocol, serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress } })], controllers: [Orders] }).compile();
        const app = adapter === 'fastify' ? module.createNestApplication(new FastifyAdapter(), { logger: false }) : module.createNestApplication({ logger: false });
        await app.listen(0, '127.0.0.1');
        try {
          const gid = await fx.client.generateGid();
          const response = await fetch(`${await app.getUrl()}/orders/${gid}`, { method: 'POST' });
          expect(response.status).toBe(201);
          const body = (await response.json()) as { gid: string; status: string; branches: Record<string, unknown>[] };
          expect(body).toMatchObject({ gid, status: 'succeed' });
          const stored = protocol === 'http' ? { data: '{"amount":7}' } : { data: Buffer.from('{"amount":7}').toString('base64'), dataEncoding: 'base64' };
          expect(body.branches).toEqual([
            { branchId: '01', op: 'compensate', status: 'prepared', url: fx.target('/TransOutRevert'), ...stored },
            { branchId: '01', op: 'action', status: 'succeed', url: fx.target('/TransOut'), ...stored, finishTime: expect.any(String) },
            { branchId: '02', op: 'compensate', status: 'prepared', url: fx.target('/TransInRevert'), ...stored },
            { branchId: '02', op: 'action', status: 'succeed', url: fx.target('/TransIn'), ...stored, finishTime: expect.any(String) },
          ]);
        } finally {
          await app.close();
        }
      });

      it('rolls back as a result, not an exception: compensations in reverse order including the failed step', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
        const final = await transfer(fx.client.newSaga(gid)).submitAndWait();

        expect(final.status).toBe('failed');
        expect(final.rollbackReason).toContain('account frozen');
        expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.query.op}`))).toEqual([
          '/TransOut action',
          '/TransIn action',
          '/TransInRevert compensate',
          '/TransOutRevert compensate',
        ]);
      });

      it('steps without compensation (as DTM\'s Go SDK adds them): the branch gets the payload, DTM stores an empty compensation; an empty action is done at once', async () => {
        const gid = await fx.client.generateGid();
        const final = await fx.client
          .newSaga(gid)
          .add(fx.target('/TransOut'), fx.payload('{"amount":30}'))
          .add('', fx.payload({ amount: 1 }))
          .add(fx.target('/TransIn'), '', fx.payload({ amount: 30 }))
          .submitAndWait();

        expect(final.status).toBe('succeed');
        expect(final.transaction.steps).toEqual(
          dtmKeepsSteps()
            ? [
                { action: fx.target('/TransOut'), compensate: '' },
                { action: '', compensate: '' },
                { action: fx.target('/TransIn'), compensate: '' },
              ]
            : [],
        );
        expect(branchTargets(final)).toEqual(['01 compensate ', `01 action ${fx.target('/TransOut')}`, '02 compensate ', '02 action ', '03 compensate ', `03 action ${fx.target('/TransIn')}`]);
        expect(branchLines(final)).toEqual(['01 compensate prepared', '01 action succeed', '02 compensate prepared', '02 action succeed', '03 compensate prepared', '03 action succeed']);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => [c.path, c.body]))).toEqual([
          ['/TransOut', '{"amount":30}'],
          ['/TransIn', '{"amount":30}'],
        ]);
      });

      it('a rollback skips the empty compensation of a step that has none, and DTM records it as done', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', 409);
        const final = await fx.client
          .newSaga(gid)
          .add(fx.target('/TransOut'), fx.payload({ amount: 30 }))
          .add(fx.target('/TransIn'), fx.target('/TransInRevert'), fx.payload({ amount: 30 }))
          .submitAndWait();

        expect(final.status).toBe('failed');
        expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.query.op}`))).toEqual(['/TransOut action', '/TransIn action', '/TransInRevert compensate']);
      });

      it('TransactionHelper.executeSaga: a step without compensate is the same step', async () => {
        const gid = await fx.helper.mustGenGid();
        const { final } = await fx.helper.executeSaga(gid, [{ action: fx.target('/TransOut'), data: fx.payload({ amount: 5 }) }, { action: '', data: fx.payload({}) }], {
          waitForFinal: true,
        });
        expect(final?.status).toBe('succeed');
        expect(final?.transaction.steps).toEqual(
          dtmKeepsSteps()
            ? [
                { action: fx.target('/TransOut'), compensate: '' },
                { action: '', compensate: '' },
              ]
            : [],
        );
        expect(branchTargets(final!)).toEqual(['01 compensate ', `01 action ${fx.target('/TransOut')}`, '02 compensate ', '02 action ']);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => [c.path, c.body]))).toEqual([['/TransOut', '{"amount":5}']]);
      });

      it('runs concurrent steps in parallel and starts an ordered step only after its predecessors', async () => {
        const gid = await fx.client.generateGid();
        const slow = async () => {
          await sleep(400);
          return 200;
        };
        fx.recorder.handle('/A', slow);
        fx.recorder.handle('/B', slow);
        const final = await fx.client
          .newSaga(gid)
          .add(fx.target('/A'), fx.target('/Ac'), fx.payload({ step: 'A' }))
          .add(fx.target('/B'), fx.target('/Bc'), fx.payload({ step: 'B' }))
          .add(fx.target('/C'), fx.target('/Cc'), fx.payload({ step: 'C' }))
          .enableConcurrent()
          .addBranchOrder(2, [0, 1])
          .submitAndWait();

        expect(final.status).toBe('succeed');
        const [a] = fx.recorder.callsTo('/A', gid);
        const [b] = fx.recorder.callsTo('/B', gid);
        const [c] = fx.recorder.callsTo('/C', gid);
        expect(b.at).toBeLessThan(a.answeredAt); // A and B overlapped
        expect(a.at).toBeLessThan(b.answeredAt);
        expect(c.at).toBeGreaterThanOrEqual(Math.max(a.answeredAt, b.answeredAt)); // C waited for both
        expect(final.transaction.customData).toEqual({ concurrent: true, orders: { '2': [0, 1] } });
      });

      it('a concurrent saga whose actions all fail with an error: the DtmOutcomeUnknownError of submitAndWait names every unfinished action (DTM runs them at once), not only the first as for a saga in order', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/StuckA', 500);
        fx.recorder.answer('/StuckB', 500);
        const saga = fx.client.newSaga(gid).add(fx.target('/StuckA'), '', fx.payload({ step: 'A' })).add(fx.target('/StuckB'), '', fx.payload({ step: 'B' })).enableConcurrent();
        try {
          const error = await saga.submitAndWait({ timeout: 1 }).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
          expect((error as DtmOutcomeUnknownError).unfinished.map((u) => `${u.branchId} ${u.op}`)).toEqual(['01 action', '02 action']);
        } finally {
          await fx.client.forceStop(gid);
        }
      });

      it('a branch order that the order of the steps breaks, without enableConcurrent(): refused with DtmUsageError before anything is sent (DTM would ignore it and run the steps one after another)', async () => {
        const gid = await fx.client.generateGid();
        const saga = fx.client.newSaga(gid).add(fx.target('/A'), '', fx.payload({ step: 'A' })).add(fx.target('/B'), '', fx.payload({ step: 'B' })).addBranchOrder(0, [1]);
        await expect(saga.submitAndWait({ timeout: 10 })).rejects.toThrow(DtmUsageError);
        await expect(saga.submit()).rejects.toThrow(/addBranchOrder\(0, \[1\]\): without enableConcurrent\(\) DTM runs the steps one after another.*step 0 would run before step 1/);
        await sleep(300);
        expect(await fx.client.query(gid)).toBeNull();
        expect(fx.recorder.callsFor(gid)).toEqual([]);

        // an order the steps keep anyway is sent, and DTM runs them one after another
        const kept = await fx.client.generateGid();
        const final = await fx.client.newSaga(kept).add(fx.target('/A'), '', fx.payload({ step: 'A' })).add(fx.target('/B'), '', fx.payload({ step: 'B' })).addBranchOrder(1, [0]).submitAndWait();
        expect(final.status).toBe('succeed');
        expect(firstCalls(fx.recorder.callsFor(kept).map((c) => c.path))).toEqual(['/A', '/B']);
      });

      it('retryLimit 0 (DTM v1.19 reads a limit only above 0: 0 is no limit, a failing action retried for ever, never rolled back) is refused with DtmUsageError before anything is sent', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', 500);
        const saga = transfer(fx.client.newSaga(gid, { retryInterval: 1 }));
        expect(() => saga.setRetryLimit(0)).toThrow(DtmUsageError);
        expect(() => saga.setRetryLimit(0)).toThrow(/retryLimit 0 is DTM's "no limit".*Leave retryLimit unset for no limit, or give 1 or more/);
        expect(() => fx.client.newSaga(gid, { retryLimit: 0 })).toThrow(DtmUsageError);
        await expect(fx.helper.executeSaga(gid, [{ action: fx.target('/TransIn'), data: fx.payload({}) }], { retryLimit: 0 })).rejects.toThrow(DtmUsageError);
        expect(await fx.client.query(gid)).toBeNull();
        expect(fx.recorder.callsFor(gid)).toHaveLength(0);
      });

      it('timeoutToFail: a saga still unfinished after it fails with "Timeout after" and is compensated', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 425); // ONGOING forever
        const final = await transfer(fx.client.newSaga(gid, { timeoutToFail: 1, retryInterval: 1 })).submitAndWait({ timeout: 20 });

        expect(final.status).toBe('failed');
        expect(final.rollbackReason).toBe('Timeout after 1 seconds');
        expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'prepared', 'prepared', 'prepared']);
        expect(fx.recorder.callsTo('/TransOutRevert', gid).length).toBeGreaterThanOrEqual(1); // at least once: the shared DTM's cron may compensate again
        expect(fx.recorder.callsTo('/TransIn', gid)).toHaveLength(0);
      });

      it('ONGOING then success: DTM polls the step again at the retry interval', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 425, 200);
        const final = await transfer(fx.client.newSaga(gid, { retryInterval: 1 })).submitAndWait({ timeout: 20 });

        expect(final.status).toBe('succeed');
        expect(firstCalls(fx.recorder.callsTo('/TransOut', gid).map((c) => c.status))).toEqual([425, 200]);
      });

      it('no timeout unless one is set (lynx.dtm.saga_timeout, timeoutToFail): DTM stores no timeout_to_fail and retries a slow step until it is done', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', 425, 425, 200);
        const final = await transfer(fx.client.newSaga(gid, { retryInterval: 1 })).submitAndWait({ timeout: 20 });

        expect(final.status).toBe('succeed');
        // DTM answers timeout_to_fail only when it is not 0 (Go omitempty)
        expect((await queryTrans(gid)).transaction?.timeout_to_fail).toBeUndefined();
        expect(fx.recorder.callsTo('/TransOutRevert', gid)).toHaveLength(0);
      });

      it('branchHeaders reach every branch call, the cron retry included', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', 500, 200);
        await transfer(fx.client.newSaga(gid, { branchHeaders: { 'x-tenant': 'acme', 'x-request-id': 'r-42' } })).submit();
        await fx.recorder.waitForCalls('/TransIn', 1, { gid });
        await triggerCron();
        const final = await fx.client.waitForFinal(gid, { timeout: 20 });

        expect(final.status).toBe('succeed');
        const calls = fx.recorder.callsFor(gid);
        expect(firstCalls(calls.map((c) => `${c.path} ${c.status}`))).toEqual(['/TransOut 200', '/TransIn 500', '/TransIn 200']);
        for (const call of calls) expect(call.headers).toMatchObject({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
        expect(final.transaction.options.branchHeaders).toEqual({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
      });

      it('a branchHeaders name ending in -bin (gRPC binary metadata) is carried, not refused: every branch reads its text (an HTTP header; over gRPC the bytes of the text, as DTM\'s grpc-go sends them), DTM stores it as given', async () => {
        const gid = await fx.client.generateGid();
        const final = await transfer(fx.client.newSaga(gid, { branchHeaders: { 'x-ctx-bin': 'abc' } })).submitAndWait({ timeout: 20 });
        expect(final.status).toBe('succeed');
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.headers['x-ctx-bin']}`))).toEqual(['/TransOut abc', '/TransIn abc']);
        expect(final.transaction.options.branchHeaders).toEqual({ 'x-ctx-bin': 'abc' });
      });

      it('an option the module does not know (DTM\'s own snake_case name, the Go SDK\'s requestTimeout, a typo) is refused with DtmUsageError naming it, in every mode; nothing is sent', async () => {
        const gid = await fx.client.generateGid();
        // options built elsewhere (a shared object, plain JavaScript): TypeScript checks only literals
        const snake = { timeout_to_fail: 5 } as object;
        const goName = { timeoutToFail: 300, requestTimeout: 3 } as object;
        const typo = { retryIntervall: 1 } as object;
        expect(() => fx.client.newSaga(gid, snake)).toThrow(DtmUsageError);
        expect(() => fx.client.newSaga(gid, snake)).toThrow(/the transaction options have no "timeout_to_fail"; did you mean "timeoutToFail"\?/);
        expect(() => fx.client.newMsg(gid, goName)).toThrow(/the transaction options have no "requestTimeout"; did you mean "branchTimeout"\?/);
        const saga = transfer(fx.client.newSaga(gid));
        expect(() => saga.setOptions(typo)).toThrow(/the transaction options have no "retryIntervall"; did you mean "retryInterval"\?/);
        await expect(fx.client.tccGlobalTransaction(gid, async (tcc) => tcc.callBranch(fx.payload({}), fx.target('/Try'), fx.target('/Confirm'), fx.target('/Cancel')), goName)).rejects.toThrow(DtmUsageError);
        await expect(fx.helper.executeSaga(gid, [{ action: fx.target('/TransIn'), data: fx.payload({}) }], { waitForFinal: true, ...snake })).rejects.toThrow(DtmUsageError);
        expect(await fx.client.query(gid)).toBeNull();
        expect(fx.recorder.callsFor(gid)).toHaveLength(0);
        // an option given as undefined changes nothing, whatever its name
        await saga.setOptions({ unused: undefined } as object).submit();
        expect((await fx.client.waitForFinal(gid, { timeout: 10 })).status).toBe('succeed');
      });

      it('retryLimit, which DTM v1.19 reads for sagas only, given to a message, a TCC or an XA transaction (where DTM would store it and never apply it) is refused with DtmUsageError; nothing is sent', async () => {
        const gid = await fx.client.generateGid();
        expect(() => fx.client.newMsg(gid, { retryLimit: 2 })).toThrow(DtmUsageError);
        expect(() => fx.client.newMsg(gid).setOptions({ retryLimit: 2 })).toThrow(/retryLimit is a saga option: DTM v1.19 reads it for sagas only/);
        await expect(fx.client.tccGlobalTransaction(gid, async (tcc) => tcc.callBranch(fx.payload({}), fx.target('/Try'), fx.target('/Confirm'), fx.target('/Cancel')), { retryLimit: 2 })).rejects.toThrow(DtmUsageError);
        await expect(fx.helper.executeTcc(gid, [{ try: fx.target('/Try'), confirm: fx.target('/Confirm'), cancel: fx.target('/Cancel'), data: fx.payload({}) }], { retryLimit: 2 })).rejects.toThrow(DtmUsageError);
        await expect(fx.client.xaGlobalTransaction(gid, async () => undefined, { retryLimit: 2 })).rejects.toThrow(DtmUsageError);
        expect(await fx.client.query(gid)).toBeNull();
        expect(fx.recorder.callsFor(gid)).toHaveLength(0);
      });

      it('setOptions() and setRetryLimit() after submit() are refused: DTM keeps the options it was submitted with', async () => {
        const gid = await fx.client.generateGid();
        const saga = transfer(fx.client.newSaga(gid, { branchHeaders: { 'x-tenant': 'sent' } }));
        await saga.submit();
        const why = `saga ${gid}: setOptions() after submit(): DTM keeps the options of the submit() call`;
        expect(() => saga.setOptions({ branchHeaders: { 'x-tenant': 'late' } })).toThrow(why);
        expect(() => saga.setOptions({ waitResult: true })).toThrow(why);
        expect(() => saga.setRetryLimit(3)).toThrow(DtmUsageError);
        expect(() => saga.setRetryLimit(3)).toThrow(/set the options before submit\(\): in newSaga\(gid, options\) or with setOptions\(\)$/);
        expect(saga.options.branchHeaders).toEqual({ 'x-tenant': 'sent' });
        const final = await fx.client.waitForFinal(gid, { timeout: 10 });
        expect(final.status).toBe('succeed');
        expect(final.transaction.options.branchHeaders).toEqual({ 'x-tenant': 'sent' });
        expect(final.transaction.options.retryLimit).toBeUndefined();
      });

      it('waitResult: submit resolves after the first round, and fails (409) when that round did not succeed', async () => {
        const ok = await fx.client.generateGid();
        await transfer(fx.client.newSaga(ok, { waitResult: true })).submit();
        expect((await queryTrans(ok)).transaction?.status).toBe('succeed');

        const ongoing = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 425, 200);
        await expect(transfer(fx.client.newSaga(ongoing, { waitResult: true, retryInterval: 1 })).submit()).rejects.toThrow(
          /did not succeed in DTM's first round .* use submitAndWait\(\)/,
        );
        // ...and submitAndWait() with waitResult reads the 409 as "not final yet"
        expect((await fx.client.waitForFinal(ongoing, { timeout: 20 })).status).toBe('succeed');
      });

      it('waitResult: submit() throws the same typed errors on both protocols (DTM answers 409 / ABORTED for a rolled-back and a still-running first round alike): rolled back, DtmFailureError with the rollback reason; still running, DtmOngoingError; DTM unreachable, DtmUnavailableError', async () => {
        const failed = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
        const rolledBack = await transfer(fx.client.newSaga(failed, { waitResult: true })).submit().catch((e: unknown) => e);
        expect(rolledBack).toBeInstanceOf(DtmFailureError);
        expect([(rolledBack as DtmFailureError).reason, (await queryTrans(failed)).transaction?.status]).toEqual(['account frozen', 'failed']);

        fx.recorder.reset();
        const running = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 500, 200);
        const unfinished = await transfer(fx.client.newSaga(running, { waitResult: true, retryInterval: 1 })).submit().catch((e: unknown) => e);
        expect([unfinished instanceof DtmOngoingError, unfinished instanceof DtmOutcomeUnknownError]).toEqual([true, false]);
        expect((unfinished as Error).message).toMatch(/did not succeed in DTM's first round .* is "submitted"/);
        // DTM's retry of its step (a retry interval later) is awaited below, while DTM unreachable is tried
        const runningOutcome = fx.client.waitForFinal(running, { timeout: 20 }).then((final) => final.status, (e: unknown) => e);

        const port = await freePort();
        const down = await startDtmApp({ config: { protocol, serverUrl: `http://127.0.0.1:${port}/api/dtmsvr`, grpcServer: `127.0.0.1:${port}`, timeout: 2 } });
        try {
          const gid = `down-wait-result-${protocol}`;
          const unreachable = await transfer(down.client.newSaga(gid, { waitResult: true })).submit().catch((e: unknown) => e);
          expect(unreachable).toBeInstanceOf(DtmUnavailableError);
          expect((unreachable as Error).message).toContain(protocol === 'grpc' ? `could not reach 127.0.0.1:${port}/dtmgimp.Dtm/Submit` : `could not reach http://127.0.0.1:${port}/api/dtmsvr/submit`);
          expect(fx.recorder.callsFor(gid)).toEqual([]);
        } finally {
          await down.close();
        }
        expect(await runningOutcome).toBe('succeed');
      });

      it('waitResult, a step answering FAILURE: submitAndWait resolves failed with the reason (DTM rolled back in its first round and answered FAILURE), not DtmFailureError', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
        const final = await transfer(fx.client.newSaga(gid, { waitResult: true })).submitAndWait({ timeout: 30 }).catch((e: unknown) => e);
        expect(final).toMatchObject({ gid, status: 'failed' });
        expect((final as FinalResult).rollbackReason).toContain('account frozen');
        expect(branchLines(final as FinalResult)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
      });

      it('waitResult, a step answering ONGOING once: submitAndWait waits for the outcome (succeed), not DtmOngoingError', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 425, 200);
        const final = await transfer(fx.client.newSaga(gid, { waitResult: true, retryInterval: 1 })).submitAndWait({ timeout: 30 });
        expect(final).toMatchObject({ gid, status: 'succeed' });
        expect(firstCalls(fx.recorder.callsTo('/TransOut', gid).map((c) => c.status))).toEqual([425, 200]);
      });

      it('a gid DTM already finished: submitAndWait throws DtmGidInUseError (with waitResult too), the new steps never run, DTM keeps the old saga', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransIn', 409);
        const first = await transfer(fx.client.newSaga(gid)).submitAndWait();
        expect(first.status).toBe('failed');
        const succeeded = await fx.client.generateGid();
        expect((await fx.client.newSaga(succeeded).add(fx.target('/TransOut'), fx.payload({ amount: 1 })).submitAndWait()).status).toBe('succeed');

        for (const [reusedGid, status] of [[gid, 'failed'], [succeeded, 'succeed']] as const) {
          for (const waitResult of [true, false]) {
            const reused = fx.client.newSaga(reusedGid, { waitResult }).add(fx.target('/Other'), fx.target('/OtherRevert'), fx.payload({ amount: 2 })).submitAndWait();
            await expect(reused).rejects.toBeInstanceOf(DtmGidInUseError);
            await expect(reused).rejects.toMatchObject({ gid: reusedGid, currentStatus: status, protocol });
            await expect(reused).rejects.toThrow(new RegExp(`already holds a transaction ${reusedGid} that is "${status}".*use a new one`));
          }
        }
        await sleep(300); // DTM calls a submitted saga's first step at once
        expect(fx.recorder.callsTo('/Other')).toEqual([]);
        expect(fx.recorder.callsTo('/OtherRevert')).toEqual([]);
        const record = await fx.client.query(gid);
        expect(record?.status).toBe('failed');
        expect(record?.steps.map((s) => s.action)).toEqual(dtmKeepsSteps() ? [fx.target('/TransOut'), fx.target('/TransIn')] : []);
        expect(branchTargets(record!).filter((line) => line.includes(' action '))).toEqual([`01 action ${fx.target('/TransOut')}`, `02 action ${fx.target('/TransIn')}`]);
        expect(branchLines(record!)).toEqual(branchLines(first));
      });

      it('submitAndWait() after this saga\'s own submit() that DTM finished in between: resolves with its outcome (with waitResult too), not DtmGidInUseError ("use a new gid" would run it twice); its steps are not run again', async () => {
        for (const waitResult of [false, true]) {
          const gid = await fx.client.generateGid();
          fx.recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
          const saga = transfer(fx.client.newSaga(gid, { waitResult }));
          await saga.submit().catch(() => undefined); // with waitResult DTM answers the rollback of its first round as FAILURE
          expect((await fx.client.waitForFinal(gid, { timeout: 10 })).status).toBe('failed');

          const final = await saga.submitAndWait({ timeout: 10 });
          expect(final).toMatchObject({ gid, status: 'failed' });
          expect(final.rollbackReason).toContain('account frozen');
          expect(firstCalls(fx.recorder.callsFor(gid).map((c) => c.path))).toEqual(['/TransOut', '/TransIn', '/TransInRevert', '/TransOutRevert']);
          fx.recorder.reset();
        }
      });

      it('add(), addBranchOrder() and enableConcurrent() after submit() are refused (DtmUsageError): DTM keeps the steps of the submit it took, so a step added then would silently never run', async () => {
        const gid = await fx.client.generateGid();
        const saga = transfer(fx.client.newSaga(gid));
        await saga.submit();
        expect((await fx.client.waitForFinal(gid, { timeout: 10 })).status).toBe('succeed');

        expect(() => saga.add(fx.target('/Late'), fx.target('/LateRevert'), fx.payload({ amount: 1 }))).toThrow(DtmUsageError);
        expect(() => saga.add(fx.target('/Late'), fx.payload({ amount: 1 }))).toThrow(/saga \S+: add\(\) after submit\(\): DTM keeps the steps of the submit it took/);
        expect(() => saga.addBranchOrder(1, [0])).toThrow(/addBranchOrder\(\) after submit\(\)/);
        expect(() => saga.enableConcurrent()).toThrow(/enableConcurrent\(\) after submit\(\)/);
        const final = await saga.submitAndWait({ timeout: 10 });
        expect(final.status).toBe('succeed');
        expect(final.branches).toHaveLength(4);
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => c.path))).toEqual(['/TransOut', '/TransIn']);
      });

      it('a gid DTM holds for another saga still running: submitAndWait throws DtmGidInUseError before submitting (DTM v1.19 would run the new steps over that saga and mark it done), the running saga goes on untouched', async () => {
        const gid = await fx.client.generateGid();
        // ONGOING until the test lets it succeed: DTM's retry (retryInterval 1, or at once after another test file's
        // /resetCronTime) cannot finish the first saga before the second submitAndWait() checks the gid
        let transOutSucceeds = false;
        fx.recorder.handle('/TransOut', () => (transOutSucceeds ? 200 : 425));
        await transfer(fx.client.newSaga(gid, { retryInterval: 1 })).submit();
        await fx.recorder.waitForCalls('/TransOut', 1, { gid });

        const other = fx.client.newSaga(gid).add(fx.target('/Other'), fx.target('/OtherRevert'), fx.payload({ amount: 2 })).submitAndWait({ timeout: 10 });
        await expect(other).rejects.toBeInstanceOf(DtmGidInUseError);
        await expect(other).rejects.toMatchObject({ gid, currentStatus: 'submitted' });
        await expect(other).rejects.toThrow(/another saga, still running/);
        transOutSucceeds = true;

        // the first saga is DTM's own again: its ONGOING step is retried, then its second step runs
        const final = await fx.client.waitForFinal(gid, { timeout: 20 });
        expect(final.status).toBe('succeed');
        expect(fx.recorder.callsTo('/Other')).toEqual([]);
        // ONGOING (once or more: DTM's retries until let succeed), its success, then the second step
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`))).toEqual(['/TransOut 425', '/TransOut 200', '/TransIn 200']);
        expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.url}`)).toEqual([
          `01 compensate ${fx.target('/TransOutRevert')}`,
          `01 action ${fx.target('/TransOut')}`,
          `02 compensate ${fx.target('/TransInRevert')}`,
          `02 action ${fx.target('/TransIn')}`,
        ]);
      });

      it('two submitAndWait() of different sagas racing on the same fresh gid (both pass the check of the gid): the one whose branches DTM recorded resolves with its outcome; the other is DtmOutcomeUnknownError (or DtmGidInUseError when its check came late), not the winner\'s "succeed" as its own', async () => {
        const { gid, winner, loser } = await raceOnFreshGid(fx, (id, path) =>
          fx.client.newSaga(id, { retryInterval: 1 }).add(fx.target(path), fx.target(`${path}Revert`), fx.payload({ path })).submitAndWait({ timeout: 20 }),
        );
        expect(winner.final).toMatchObject({ gid, status: 'succeed' });
        // DtmGidInUseError when its check of the gid came after the other's submit (nothing of it sent); else DTM took both submits
        if (!(loser.error instanceof DtmGidInUseError)) {
          expect(loser.error).toBeInstanceOf(DtmOutcomeUnknownError);
          expect((loser.error as Error).message).toMatch(/holds another transaction's steps, not this saga's: another submit under the gid got there at the same time/);
        }
      });

      it('the same saga submitted again under its gid while DTM still runs it (a new object, the same steps and payloads): not refused, submitAndWait resolves with its outcome', async () => {
        const gid = await fx.client.generateGid();
        fx.recorder.answer('/TransOut', 425, 200);
        await transfer(fx.client.newSaga(gid, { retryInterval: 60 })).submit();
        await fx.recorder.waitForCalls('/TransOut', 1, { gid });

        const final = await transfer(fx.client.newSaga(gid, { retryInterval: 60 })).submitAndWait({ timeout: 20 });
        expect(final.status).toBe('succeed');
        expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`))).toEqual(['/TransOut 425', '/TransOut 200', '/TransIn 200']);
      });

      it.each([99, 100, 101])("a saga and a message of %i steps (DTM numbers the 100th step's branches 100): submitAndWait resolves with the outcome DTM recorded, every step run (before: from 100 steps, DtmOutcomeUnknownError 'holds another transaction's steps' for a saga DTM finished)", async (count) => {
        const sagaGid = await fx.client.generateGid();
        const saga = fx.client.newSaga(sagaGid);
        for (let i = 1; i <= count; i += 1) saga.add(fx.target('/Step'), fx.target('/StepRevert'), fx.payload({ i }));
        const final = await saga.submitAndWait({ timeout: 30 });
        expect(final.status).toBe('succeed');
        expect(final.branches.at(-1)).toMatchObject({ branchId: String(count), op: 'action', status: 'succeed' });
        // every step called (a step called again counts once: another file's /resetCronTime makes DTM take a transaction during its first round)
        const stepsCalled = (gid: string) => [...new Set(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.body}`))];
        expect(new Set(fx.recorder.callsFor(sagaGid).map((c) => c.path))).toEqual(new Set(['/Step']));
        expect(stepsCalled(sagaGid)).toHaveLength(count);

        const msgGid = await fx.client.generateGid();
        const msg = fx.client.newMsg(msgGid);
        for (let i = 1; i <= count; i += 1) msg.add(fx.target('/Deliver'), fx.payload({ i }));
        const delivered = await msg.submitAndWait({ timeout: 30 });
        expect(delivered.status).toBe('succeed');
        expect(delivered.branches.filter((b) => b.op === 'action' && b.status === 'succeed')).toHaveLength(count);
        expect(stepsCalled(msgGid)).toHaveLength(count);
      }, 90_000);

      it('a gid DTM holds for a prepared message: submitAndWait throws DtmGidInUseError and sends nothing; the message stays prepared', async () => {
        const gid = await fx.client.generateGid();
        await fx.client.newMsg(gid).add(fx.target('/Deliver'), fx.payload({ n: 1 })).prepare(fx.target('/QueryPrepared'));

        const saga = fx.client.newSaga(gid).add(fx.target('/Other'), fx.target('/OtherRevert'), fx.payload({ amount: 2 })).submitAndWait({ timeout: 10 });
        await expect(saga).rejects.toBeInstanceOf(DtmGidInUseError);
        await expect(saga).rejects.toMatchObject({ gid, currentStatus: 'prepared' });
        await expect(saga).rejects.toThrow(/a msg, not this saga/);
        await sleep(300);
        expect(fx.recorder.callsFor(gid)).toEqual([]);
        const record = await fx.client.query(gid);
        expect(record).toMatchObject({ transType: 'msg', status: 'prepared' });
      });
  });

  // what DTM retries, counted: on a DTM server of its own, where no other file's /resetCronTime has the cron take a saga
  // during its first round (a pass of its own, calling its steps again and counting retries: the shared server's did)
  describe(`DtmClient sagas over ${protocol}: DTM's retries, counted`, () => {
    const fx = useDtmAppWithRecorder(protocol, { ownDtm: `dtm-saga-retries-${protocol}` });
    const transfer = transferOn(fx);

    it('retryLimit: DTM re-runs a failing action that many times, then rolls back with its reason', async () => {
      const enough = await fx.client.generateGid();
      fx.recorder.answer('/TransIn', 500, 500, 500, 200);
      const ok = await transfer(fx.client.newSaga(enough)).setRetryLimit(3).submitAndWait();
      expect(ok.status).toBe('succeed');
      expect(fx.recorder.callsTo('/TransIn', enough).map((c) => c.status)).toEqual([500, 500, 500, 200]);

      fx.recorder.reset();
      const tooFew = await fx.client.generateGid();
      fx.recorder.answer('/TransIn', 500, 500, 500, 200);
      const failed = await transfer(fx.client.newSaga(tooFew)).setRetryLimit(1).submitAndWait();
      expect(failed.status).toBe('failed');
      expect(failed.rollbackReason).toBe('RetryCount is greater than RetryLimit, RetryLimit: 1');
      expect(failed.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'prepared']);
    });

    it('retryLimit is one budget for the whole saga (DTM v1.19 counts the re-runs of every action together): two actions failing once each exceed a limit of 1', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/TransOut', 500, 200);
      fx.recorder.answer('/TransIn', 500, 200);
      const final = await transfer(fx.client.newSaga(gid)).setRetryLimit(1).submitAndWait();
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toBe('RetryCount is greater than RetryLimit, RetryLimit: 1');
      expect(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`)).toEqual(['/TransOut 500', '/TransOut 200', '/TransIn 500', '/TransInRevert 200', '/TransOutRevert 200']);
    });

    it('retryLimit: DTM makes its re-runs at once, not at the retry interval, and counts an ONGOING answer as one: an action answering ONGOING is rolled back after limit + 1 calls', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/TransIn', 425, 425, 425, 200); // would succeed at the 4th call
      const final = await transfer(fx.client.newSaga(gid, { retryInterval: 60 })).setRetryLimit(2).submitAndWait({ timeout: 30 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toBe('RetryCount is greater than RetryLimit, RetryLimit: 2');
      // three calls within DTM's first round: a retry interval of 60 s never passed
      expect(fx.recorder.callsTo('/TransIn', gid).map((c) => c.status)).toEqual([425, 425, 425]);
      expect(fx.recorder.callsTo('/TransOutRevert', gid)).toHaveLength(1);
    });

    it('a 500 then success: DTM retries the step (here taken by the cron at once)', async () => {
      const gid = await fx.client.generateGid();
      fx.recorder.answer('/TransIn', 500, 200);
      await transfer(fx.client.newSaga(gid)).submit();
      await fx.recorder.waitForCalls('/TransIn', 1, { gid });
      await triggerCron(fx.serverUrl);
      const final = await fx.client.waitForFinal(gid, { timeout: 20 });

      expect(final.status).toBe('succeed');
      expect(fx.recorder.callsTo('/TransIn', gid).map((c) => c.status)).toEqual([500, 200]);
      // the retry came from DTM's cron, after the first answer
      const [first, second] = fx.recorder.callsTo('/TransIn', gid);
      expect(second.at).toBeGreaterThan(first.answeredAt);
    });
  });

  describe(`an add() whose payload is refused (over ${protocol}), the error caught`, () => {
    const fx = useDtmAppWithRecorder(protocol);

    it('adds no step: the saga and the message as they were before it are submitted and run (before: a step without a payload, which DTM\'s submit panicked on, retried until the wait gave up)', async () => {
      const gid = await fx.client.generateGid();
      const saga = fx.client.newSaga(gid).add(fx.target('/TransOut'), fx.target('/TransOutRevert'), fx.payload({ amount: 30 }));
      expect(() => saga.add(fx.target('/TransIn'), fx.target('/TransInRevert'), '')).toThrow(DtmUsageError);
      expect(await settledWithin(saga.submitAndWait({ timeout: 15 }), 25_000)).toMatchObject({ status: 'succeed' });
      expect(firstCalls(fx.recorder.callsFor(gid).map((c) => c.path))).toEqual(['/TransOut']);

      const msgGid = await fx.client.generateGid();
      const msg = fx.client.newMsg(msgGid).add(fx.target('/TransIn'), fx.payload({ amount: 30 }));
      expect(() => msg.add(fx.target('/TransOut'), '')).toThrow(DtmUsageError);
      expect(await settledWithin(msg.submitAndWait({ timeout: 15 }), 25_000)).toMatchObject({ status: 'succeed' });
      expect(firstCalls(fx.recorder.callsFor(msgGid).map((c) => c.path))).toEqual(['/TransIn']);
    }, 60_000);
  });
}
