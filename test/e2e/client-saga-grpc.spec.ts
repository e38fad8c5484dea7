// The saga scenarios of client-saga.cases.ts with DtmClient talking gRPC to DTM (client-saga.spec.ts:
// HTTP), then a gRPC saga or message whose payloads are more than DTM's gRPC API takes.
import { describe, expect, it } from '@jest/globals';
import { DtmServerError, DtmUsageError } from 'nestjs-dtm';
import { firstCalls, useDtmAppWithRecorder } from '../support/fixtures.js';
import { queryTrans, waitForTransStatus } from '../support/harness.js';
import { describeClientSagas } from './client-saga.cases.js';

describeClientSagas('grpc');

describe("a gRPC saga or message whose payloads are more than DTM's gRPC API takes in one request (4 MiB, grpc-go's default, which DTM v1.19 keeps)", () => {
  const fx = useDtmAppWithRecorder('grpc');
  const MiB = 1024 * 1024;

  it('is refused at the add() that takes it over, with a DtmUsageError saying so (not at the submit, by DTM, as gRPC status 8): DTM holds nothing, no branch runs', async () => {
    const gid = await fx.client.generateGid();
    const saga = fx.client.newSaga(gid).add(fx.target('/TransOut'), fx.target('/TransOutRevert'), Buffer.alloc(2.5 * MiB, 0x61));
    const refused = (() => {
      try {
        saga.add(fx.target('/TransIn'), fx.target('/TransInRevert'), Buffer.alloc(2.5 * MiB, 0x62));
      } catch (err) {
        return err;
      }
    })();
    expect(refused).toBeInstanceOf(DtmUsageError);
    expect((refused as Error).message).toContain(`saga ${gid} step 1: its payload takes the saga's payloads to 5242880 bytes, over the 4194304 bytes (4 MiB) DTM's gRPC API takes in one request`);
    const msgGid = await fx.client.generateGid();
    expect(() => fx.client.newMsg(msgGid).add(fx.target('/TransIn'), Buffer.alloc(4 * MiB + 1, 0x61))).toThrow(`msg ${msgGid} step 0: its payload takes the msg's payloads to 4194305 bytes, over the 4194304 bytes`);
    // the saga as it was before the refused add() goes on
    expect((await saga.submitAndWait()).status).toBe('succeed');
    expect(firstCalls(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.body.length}`))).toEqual([`/TransOut ${2.5 * MiB}`]);
    expect((await queryTrans(msgGid)).transaction).toBeNull();
  }, 60_000);

  it("payloads of exactly 4 MiB together: the add() takes them (its limit is on the payloads), the submit is refused by DTM for the request's other bytes (gid, targets, options) with a DtmServerError saying so, at once; DTM holds nothing, no branch runs", async () => {
    const gid = await fx.client.generateGid();
    const saga = fx.client.newSaga(gid).add(fx.target('/TransOut'), fx.target('/TransOutRevert'), Buffer.alloc(2 * MiB, 0x61));
    saga.add(fx.target('/TransIn'), fx.target('/TransInRevert'), Buffer.alloc(2 * MiB, 0x62)); // 4194304 bytes: not over the limit
    const error = await saga.submitAndWait({ timeout: 10 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmServerError);
    expect((error as Error).message).toMatch(new RegExp(`^DTM refused submit of ${gid}: DTM's gRPC server takes requests of at most 4194304 bytes .*, and this one is 419\\d{4} bytes\\. Nothing of this call is stored or run`));
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(fx.recorder.callsFor(gid)).toEqual([]);
  }, 60_000);

  it("a TCC branch's payload over it (DTM's registration refuses it): a DtmServerError saying so, not a bare gRPC status 8; the TCC is aborted, its Try never called", async () => {
    const gid = await fx.client.generateGid();
    const error = await fx.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(Buffer.alloc(4 * MiB, 0x61), fx.target('/Try'), fx.target('/Confirm'), fx.target('/Cancel'))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmServerError);
    expect((error as Error).message).toMatch(new RegExp(`^DTM refused registerBranch of ${gid}: DTM's gRPC server takes requests of at most 4194304 bytes .*, and this one is \\d+ bytes\\. Nothing of this call is stored or run`));
    // DTM records the abort 'aborting' and goes on to 'failed' after its answer (no branch to cancel)
    expect((await waitForTransStatus(gid, ['failed', 'succeed'])).transaction?.status).toBe('failed');
    expect(fx.recorder.callsFor(gid)).toEqual([]);
  }, 60_000);
});
