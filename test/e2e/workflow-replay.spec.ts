// Workflow replays against the real DTM server: what a resumed execution finds recorded by an
// earlier one, when the workflow's code changed under it (a deploy while executions were pending),
// and step values holding bytes (a gRPC reply's bytes field, a local step's Buffer).
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmClient, DtmFailureError, DtmModule, DtmWorkflow, DtmWorkflowDivergedError, DtmWorkflowPendingError, type WorkflowContext } from 'nestjs-dtm';
import { RECORDER_PROTO } from '../support/grpc.js';
import { useOwnDtm } from '../support/fixtures.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { freePort } from '../support/services/process.js';

interface Urls {
  a: string;
  aRevert: string;
  b: string;
  bRevert: string;
  bConfirm: string;
  c: string;
}

/** The code of shrink.v1 now: 'v1' (steps a, b, c), or a changed one that ends after step a, refusing ('v2-refuse') or returning ('v2-return'). */
let version: 'v1' | 'v2-refuse' | 'v2-return' = 'v1';

@Injectable()
class ChangingWorkflows {
  @DtmWorkflow('shrink.v1')
  async shrink(wf: WorkflowContext<Urls>) {
    const u = wf.input;
    await wf.step('a').onRollback((s) => s.http(u.aRevert, { n: 1 })).http(u.a, { n: 1 });
    if (version === 'v2-refuse') throw new DtmFailureError('refused by the new rule');
    if (version === 'v2-return') return 'short';
    await wf.step('b').onRollback((s) => s.http(u.bRevert, { n: 2 })).onCommit((s) => s.http(u.bConfirm, { n: 2 })).http(u.b, { n: 2 });
    await wf.step('c').http(u.c, { n: 3 });
    return 'long';
  }
}

/** The code of ends.v1 now: 'v1' (steps a and b, each with an onCommit and an onRollback, then it returns), or 'v2-refuse' (the same steps, then a new rule refuses). */
let endsVersion: 'v1' | 'v2-refuse' = 'v1';

@Injectable()
class EndingWorkflows {
  @DtmWorkflow('ends.v1')
  async ends(wf: WorkflowContext<Urls>) {
    const u = wf.input;
    await wf.step('a').onRollback((s) => s.http(u.aRevert, { n: 1 })).onCommit((s) => s.http(u.c, { n: 1 })).http(u.a, { n: 1 });
    await wf.step('b').onRollback((s) => s.http(u.bRevert, { n: 2 })).onCommit((s) => s.http(u.bConfirm, { n: 2 })).http(u.b, { n: 2 });
    if (endsVersion === 'v2-refuse') throw new DtmFailureError('refused by the new rule');
    return 'done';
  }
}

/** What bytes.v1's code got from its steps, per execution: the reply's bytes field and the local step's digest (byte values when they are Buffers). */
const seen: unknown[] = [];
const bytesOf = (value: unknown) => (Buffer.isBuffer(value) ? { buffer: [...value] } : value);

@Injectable()
class BytesWorkflows {
  /** A gRPC step whose reply (recorder.Blob) holds bytes, passed on to the next gRPC step's bytes field; a local step returning a Buffer and a Uint8Array; then step c. */
  @DtmWorkflow('bytes.v1')
  async bytes(wf: WorkflowContext<{ blob: string; keep: string; c: string }>) {
    const reply = await wf.step('blob').grpc<{ data: Buffer; note: string }>(wf.input.blob, { note: 'give' });
    const local = await wf.step('digest').run(() => ({ digest: Buffer.from([0, 1, 254, 255]), raw: new Uint8Array([9, 8]) }));
    await wf.step('keep').grpc(wf.input.keep, { data: reply.data, note: 'keep' });
    seen.push({ reply: bytesOf(reply.data), note: reply.note, digest: bytesOf(local.digest), raw: bytesOf(local.raw) });
    await wf.step('c').http(wf.input.c, { n: 3 });
    return 'kept';
  }
}

/**
 * This file's own DTM server: its tests list every call a workflow's steps made, and on the shared one another file's
 * /resetCronTime can have DTM resume a pending workflow (this app's resume route) meanwhile, a replay the test did not make.
 */
const dtm = useOwnDtm('dtm-workflow-replay');
const { queryTrans } = dtm;

let recorder: Recorder;
let app: INestApplication;
let client: DtmClient;

beforeAll(async () => {
  recorder = await startRecorder();
  const port = await freePort();
  @Module({
    imports: [
      DtmModule.forRoot({
        config: { ...dtm.config(), appUrl: `http://127.0.0.1:${port}`, retryInterval: 60 },
        grpcProtos: { protoPath: RECORDER_PROTO },
      }),
    ],
    providers: [ChangingWorkflows, BytesWorkflows, EndingWorkflows],
  })
  class ReplayModule {}
  app = await NestFactory.create(ReplayModule, { logger: ['error'], forceCloseConnections: true });
  await app.listen(port, '127.0.0.1');
  client = app.get(DtmClient);
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
});
beforeEach(() => {
  recorder.reset();
  version = 'v1';
  endsVersion = 'v1';
});

const urls = (): Urls => ({
  a: recorder.urlFor('/A'),
  aRevert: recorder.urlFor('/ARevert'),
  b: recorder.urlFor('/B'),
  bRevert: recorder.urlFor('/BRevert'),
  bConfirm: recorder.urlFor('/BConfirm'),
  c: recorder.urlFor('/C'),
});

describe('a workflow resumed by changed code', () => {
  it.each(['v2-refuse', 'v2-return'] as const)(
    'that now ends before a step recorded by the first execution (%s): stops with the divergence, applies nothing (before: it rolled back without that step\'s compensation, or succeeded without its commit)',
    async (changed) => {
      const gid = await client.generateGid();
      recorder.answer('/C', 425); // step c ONGOING: the first execution leaves the workflow pending after recording a and b
      await expect(client.executeWorkflow('shrink.v1', gid, urls())).rejects.toBeInstanceOf(DtmWorkflowPendingError);
      expect((await queryTrans(gid)).branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed', '02 action succeed']);
      version = changed; // a deploy: the resumed execution runs the new code
      recorder.reset();
      const error = await client.executeWorkflow('shrink.v1', gid, urls()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmWorkflowPendingError);
      const cause = (error as Error).cause;
      expect(cause).toBeInstanceOf(DtmWorkflowDivergedError);
      expect(cause).toMatchObject({ recordedStep: 'b', currentStep: '', branchId: '02' });
      expect((cause as Error).message).toMatch(/^workflow "shrink\.v1" \(gid \S+\) diverged from what it recorded: position 02 \(action\) holds step "b", the code now ends before it; nothing was applied/);
      expect(recorder.callsFor(gid)).toEqual([]); // no compensation, no commit
      const { transaction, branches } = await queryTrans(gid);
      expect(transaction?.status).toBe('prepared');
      expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed', '02 action succeed']);
      // the old code, deployed back, finishes it
      version = 'v1';
      recorder.answer('/C', 200);
      await expect(client.executeWorkflow('shrink.v1', gid, urls())).resolves.toEqual({ status: 'succeed', result: 'long' });
      expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id} ${c.query.op}`)).toEqual(['/C 03 action', '/BConfirm 02 commit']);
    },
  );
});

describe('a workflow resumed in its commit by code that now rolls it back', () => {
  it("stops with the divergence, naming the commit callback recorded, and runs no rollback callback (before: it rolled back step a after step b's commit, DTM recording failed)", async () => {
    const gid = await client.generateGid();
    // commit callbacks run in reverse: b's (recorded), then a's, which answers 500: pending in its commit
    recorder.answer('/C', 500);
    await expect(client.executeWorkflow('ends.v1', gid, urls())).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    expect((await queryTrans(gid)).branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed', '02 action succeed', '02 commit succeed']);
    endsVersion = 'v2-refuse'; // a deploy: the resumed execution runs the new code
    recorder.reset();
    const error = await client.executeWorkflow('ends.v1', gid, urls()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    const cause = (error as Error).cause;
    expect(cause).toBeInstanceOf(DtmWorkflowDivergedError);
    expect(cause).toMatchObject({ recordedStep: 'b', currentStep: '', branchId: '02' });
    expect((cause as Error).message).toMatch(/^workflow "ends\.v1" \(gid \S+\) diverged from what it recorded: position 02 \(commit\) holds the commit callback of step "b", recorded by an execution that committed; the code now rolls back; nothing was applied/);
    expect(recorder.callsFor(gid)).toEqual([]); // no rollback callback
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    // the old code, deployed back, finishes the commit
    endsVersion = 'v1';
    await expect(client.executeWorkflow('ends.v1', gid, urls())).resolves.toEqual({ status: 'succeed', result: 'done' });
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id} ${c.query.op}`)).toEqual(['/C 01 commit']);
  });
});

describe('a step value holding bytes', () => {
  it("a gRPC reply's bytes field and a local step's Buffer and Uint8Array are Buffers on the first run and on a replay, as DTM's Go SDK gives the reply (its proto bytes) back; the reply's bytes pass on to the next gRPC step (before: { type: 'Buffer', data: [...] } objects, which that step's payload check refused, leaving the workflow pending)", async () => {
    const gid = await client.generateGid();
    seen.length = 0;
    // recorder.Blob { data: 01 02 7f, note: "gave" }, as the recorder answers it (its text's UTF-8)
    recorder.answer('/Blob', { status: 200, body: '\x0a\x03\x01\x02\x7f\x12\x04gave' });
    recorder.answer('/Keep', { status: 200, body: '' }); // an empty recorder.Blob
    recorder.answer('/C', 425, 200); // step c ONGOING once: pending, with steps blob, digest and keep recorded
    const input = { blob: recorder.grpcTargetFor('/Blob'), keep: recorder.grpcTargetFor('/Keep'), c: recorder.urlFor('/C') };
    const pending = await client.executeWorkflow('bytes.v1', gid, input).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    expect(String((pending as Error).cause)).toMatch(/recorder answered 425/);
    expect((await queryTrans(gid)).branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed']);
    // the replay: steps blob, digest and keep give back what they recorded, c is called again
    await expect(client.executeWorkflow('bytes.v1', gid, input)).resolves.toEqual({ status: 'succeed', result: 'kept' });
    const values = { reply: { buffer: [1, 2, 127] }, note: 'gave', digest: { buffer: [0, 1, 254, 255] }, raw: { buffer: [9, 8] } };
    expect(seen).toEqual([values, values]);
    // Blob { data: 01 02 7f, note: "keep" }, once: the replay did not call it again
    expect(recorder.callsTo('/Keep', gid).map((c) => [...Buffer.from(c.body, 'utf8')])).toEqual([[0x0a, 0x03, 0x01, 0x02, 0x7f, 0x12, 0x04, ...Buffer.from('keep')]]);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id}`)).toEqual(['/Blob 01', '/Keep 03', '/C 04', '/C 04']);
  });
});
