// Workflow replays against the real DTM server: what a resumed execution finds recorded by an
// earlier one, when the workflow's code changed under it (a deploy while executions were pending).
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmClient, DtmFailureError, DtmModule, DtmWorkflow, DtmWorkflowDivergedError, DtmWorkflowPendingError, type WorkflowContext } from 'nestjs-dtm';
import { harness, queryTrans } from '../support/harness.js';
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

let recorder: Recorder;
let app: INestApplication;
let client: DtmClient;

beforeAll(async () => {
  recorder = await startRecorder();
  const port = await freePort();
  @Module({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, retryInterval: 60 } })],
    providers: [ChangingWorkflows],
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
