// Header passthrough on branches addressed by name (lynx.dtm.services), against the real DTM server:
// a request carrying an allow-listed header and credentials (Authorization, Cookie) and another
// header starts a saga and a TCC whose branches come from a participant's manifest; over HTTP and
// gRPC, every call the participant gets (DTM's, and the app's own TCC Try) carries the allow-listed
// header and none of the others.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Module, Post, Query, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DtmClient, DtmModule } from 'nestjs-dtm';
import { harness, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

let recorder: Recorder;

/** A payload for the recorder's branches: JSON over HTTP, the message's bytes over gRPC (the recorder has no proto). */
const payload = (protocol: 'http' | 'grpc') => (protocol === 'grpc' ? new Uint8Array([8, 1]) : { n: 1 });
let app: INestApplication;
let url: string;

@Controller('start')
class StartController {
  constructor(private readonly dtm: DtmClient) {}

  @Post('saga')
  async saga(@Query('protocol') protocol: 'http' | 'grpc'): Promise<{ gid: string }> {
    const gid = await this.dtm.generateGid();
    await this.dtm.newSaga(gid, { protocol }).add({ service: 'shop', branch: 'pay' }, payload(protocol)).submitAndWait({ timeout: 20 });
    return { gid };
  }

  @Post('tcc')
  async tcc(@Query('protocol') protocol: 'http' | 'grpc'): Promise<{ gid: string }> {
    const gid = await this.dtm.generateGid();
    await this.dtm.tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch(payload(protocol), { service: 'shop', branch: 'hold' }), { protocol }, { timeout: 20 });
    return { gid };
  }
}

beforeAll(async () => {
  recorder = await startRecorder();
  const both = (path: string) => ({ http: recorder.urlFor(path), grpc: recorder.grpcTargetFor(path) });
  recorder.answer('/dtm/branches', {
    status: 200,
    body: {
      format: 'nestjs-dtm.branches/1',
      branches: [
        { name: 'pay', kind: 'saga', ops: { action: both('/Pay'), compensate: both('/PayBack') } },
        { name: 'hold', kind: 'tcc', ops: { try: both('/HoldTry'), confirm: both('/HoldConfirm'), cancel: both('/HoldCancel') } },
      ],
    },
  });
  @Module({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, passThroughHeaders: ['X-Tenant'], services: { shop: { url: recorder.url } } },
      }),
    ],
    controllers: [StartController],
  })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  app = moduleRef.createNestApplication({ forceCloseConnections: true, logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
});

describe.each(['http', 'grpc'] as const)('branches by name over %s', (protocol) => {
  it.each(['saga', 'tcc'] as const)('a %s passes on the allow-listed header only: no Authorization, Cookie or other header reaches the participant', async (kind) => {
    const answer = await fetch(`${url}/start/${kind}?protocol=${protocol}`, {
      method: 'POST',
      headers: { 'x-tenant': 'acme', authorization: 'Bearer s3cret-token', cookie: 'session=s3cret', 'x-other': 'other', 'x-forwarded-for': '10.0.0.1' },
    });
    expect(answer.status).toBe(201);
    const { gid } = (await answer.json()) as { gid: string };
    const stored = await waitForTransStatus(gid, 'succeed');
    expect(stored.transaction?.branch_headers).toEqual({ 'x-tenant': 'acme' });
    const calls = recorder.callsFor(gid);
    // the paths called, each at least once: another test file's /resetCronTime on the shared DTM can have its cron call a branch again
    expect([...new Set(calls.map((c) => c.path))].sort()).toEqual(kind === 'saga' ? ['/Pay'] : ['/HoldConfirm', '/HoldTry']);
    for (const call of calls) {
      expect([call.path, call.method, call.headers['x-tenant']]).toEqual([call.path, protocol === 'grpc' ? 'GRPC' : 'POST', 'acme']);
      const leaked = Object.keys(call.headers).filter((h) => ['authorization', 'cookie', 'x-other', 'x-forwarded-for'].includes(h));
      expect([call.path, leaked]).toEqual([call.path, []]);
    }
  });
});
