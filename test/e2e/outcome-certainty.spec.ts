// What a caller can trust when DTM restarts or a connection breaks while it waits for an outcome:
// waiting retries status queries through the restart (a private DTM server on boltdb, restarted
// mid-wait: the transaction survives), "DTM never got it" (DtmUnavailableError: the submit was never sent) is told apart from
// "DTM has it, the outcome is not known yet" (DtmOutcomeUnknownError, with the gid and last status),
// and the TCC / XA transactions can wait for their final outcome too.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type ServerHttp2Session } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { Client, credentials, Metadata, Server as GrpcServer, ServerCredentials, status as grpcStatus, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DtmFailureError, DtmGidInUseError, DtmInstrumentation, DtmOngoingError, DtmOutcomeUnknownError, DtmUnavailableError, DtmUsageError, type Tcc } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { harness, triggerCron } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { startDtmAgain, startDtm, stopDtm, type RunningDtm, type StartDtmOptions } from '../support/services/dtm.js';
import { sqlStoreDtm } from '../support/sql-store-dtm.js';
import { freePort, runDirFrom, sleep } from '../support/services/process.js';
import { answerSwallowingProxy, type AnswerSwallowingProxy } from '../support/swallow-proxy.js';

const DTM_OPTIONS: StartDtmOptions = { name: 'dtm-outcome', store: 'boltdb' };
let dtm: RunningDtm;
let recorder: Recorder;
let app: DtmTestApp;

/** What DTM's HTTP API answers to a query of `gid` (straight, not through the module). */
async function stored(gid: string): Promise<{ status?: string } | null> {
  const answer = (await (await fetch(`${dtm.info.serverUrl}/query?gid=${encodeURIComponent(gid)}`)).json()) as { transaction: { status?: string } | null };
  return answer.transaction;
}

/** The gid of a submit's JSON body (`''` when it has none). */
function gidOf(body: Buffer): string {
  try {
    return String((JSON.parse(body.toString('utf8')) as { gid?: unknown }).gid ?? '');
  } catch {
    return '';
  }
}

/** Stops the private DTM now; once it is stopped, resolves with `back`: its start again (same ports, same boltdb file) after `downMs`. */
async function bounceDtm(downMs: number): Promise<{ back: Promise<void> }> {
  await stopDtm(dtm, true);
  return {
    back: (async () => {
      await sleep(downMs);
      dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, DTM_OPTIONS);
    })(),
  };
}

beforeAll(async () => {
  dtm = await startDtm(runDirFrom(harness().runDir), DTM_OPTIONS);
  recorder = await startRecorder();
  app = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, timeout: 2 } });
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await dtm?.process.stop();
});
beforeEach(() => recorder.reset());

describe('waiting for the outcome through a DTM restart', () => {
  it('submitAndWait: DTM killed (-9) and restarted while the saga runs; the wait rides it out and resolves with what DTM recorded', async () => {
    const gid = await app.client.generateGid();
    recorder.answer('/Slow', 425); // ONGOING until the test lets it through
    const waiting = app.client
      .newSaga(gid, { retryInterval: 1 })
      .add(recorder.urlFor('/Slow'), recorder.urlFor('/SlowRevert'), { n: 1 })
      .submitAndWait({ timeout: 60 });
    await recorder.waitForCalls('/Slow', 1, { gid });
    await (await bounceDtm(1000)).back;
    recorder.answer('/Slow', 200);
    const final = await waiting;

    expect(final.status).toBe('succeed');
    expect(await stored(gid)).toMatchObject({ status: 'succeed' });
    expect(recorder.callsTo('/SlowRevert', gid)).toHaveLength(0);
  }, 90_000);

  it('the wait ends before DTM is back: DtmOutcomeUnknownError with the gid and last status; waiting again with the same gid gives the outcome', async () => {
    const gid = await app.client.generateGid();
    recorder.answer('/Held', 425);
    // the wait's first look at DTM's record answered: under load it can come after DTM called the step
    const looked = new Promise<void>((done) => {
      const off = app.module.get(DtmInstrumentation).on('dtm.call', (e) => {
        if (e.operation !== 'query' || e.gid !== gid || e.outcome !== 'ok') return;
        off();
        done();
      });
    });
    const saga = app.client.newSaga(gid, { retryInterval: 1 }).add(recorder.urlFor('/Held'), recorder.urlFor('/HeldRevert'), {});
    const waiting = saga.submitAndWait({ timeout: 2.5 }).catch((e: unknown) => e);
    await Promise.all([recorder.waitForCalls('/Held', 1, { gid }), looked]);
    await stopDtm(dtm, true);
    const error = await waiting;
    dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, DTM_OPTIONS);

    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toBeInstanceOf(DtmOngoingError); // code that handles "not finished yet" handles it
    expect(error).not.toBeInstanceOf(DtmUnavailableError);
    expect(error).toMatchObject({ gid, lastStatus: 'submitted' });
    expect((error as Error).message).toMatch(/could not be asked .*never start it again under a new gid/);
    recorder.answer('/Held', 200);
    const final = await app.client.waitForFinal(gid, { timeout: 30 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/HeldRevert', gid)).toHaveLength(0);
  }, 60_000);

  it('tccGlobalTransactionAndWait: DTM down at submit; once DTM is back and still holds it prepared, the submit is sent again and DTM confirms', async () => {
    const gid = await app.client.generateGid();
    let down: Promise<void> | undefined;
    const outcome = await app.client.tccGlobalTransactionAndWait(
      gid,
      async (tcc) => {
        await tcc.callBranch({ amount: 5 }, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'));
        ({ back: down } = await bounceDtm(1000)); // DTM stopped before the submit
        return 'tried';
      },
      // a retry interval longer than the test: DTM's cron would take the TCC whatever round of it runs,
      // and a take during the submit's round calls the Confirm a second time (dtm-two-rounds.spec.ts)
      { timeoutToFail: 30, retryInterval: 120 },
      { timeout: 40 },
    );
    await down;

    expect(outcome).toMatchObject({ gid, status: 'succeed', result: 'tried' });
    expect(recorder.callsTo('/Confirm', gid)).toHaveLength(1);
    expect(recorder.callsTo('/Cancel', gid)).toHaveLength(0);
    expect(await stored(gid)).toMatchObject({ status: 'succeed' });
  }, 60_000);

  it('msg prepare() then submitAndWait() with DTM down at the submit (connection refused): the wait rides the outage out and, DTM back holding it prepared, sends the submit again at once (as a TCC\'s), long before the back-check; delivered once', async () => {
    const gid = await app.client.generateGid();
    const msg = app.client.newMsg(gid, { timeoutToFail: 30 }).add(recorder.urlFor('/Deposit'), { amount: 2 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const logger = new RecordingLogger();
    app.module.useLogger(logger);
    await stopDtm(dtm, true);
    await sleep(300); // not an assertion: the close of the kept-alive connection reaches this app, so the submit gets a connection refused, not a reset
    const waiting = msg.submitAndWait({ timeout: 20 }); // its submit refused at once, long before DTM listens again
    dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, DTM_OPTIONS);
    const final = await waiting;

    expect(final).toMatchObject({ gid, status: 'succeed' });
    // the wait sent it again after the first submit was refused a connection (before the fix: DtmOutcomeUnknownError 'prepared' at once)
    expect(logger.lines.filter((w) => w.includes(gid))).toEqual([expect.stringMatching(/^warn DTM still holds \S+ as prepared, and its submit did not reach DTM \(.*ECONNREFUSED.*\): submitting it again under the same gid$/)]);
    expect(await stored(gid)).toMatchObject({ status: 'succeed' });
    expect(recorder.callsTo('/Deposit', gid)).toHaveLength(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  }, 60_000);

  it('gRPC: msg prepare() then submitAndWait() with DTM down at the submit: once DTM is back, the submit again waits out the channel\'s reconnect (grpc-js fails a call at once while it backs off) instead of failing and waiting 3 s more; delivered once', async () => {
    const grpcApp = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, protocol: 'grpc', timeout: 2 } });
    try {
      const gid = await grpcApp.client.generateGid();
      const msg = grpcApp.client.newMsg(gid, { timeoutToFail: 30 }).add(recorder.grpcTargetFor('/Deposit'), new Uint8Array());
      await msg.prepare(recorder.grpcTargetFor('/QueryPrepared'));
      const logger = new RecordingLogger();
      grpcApp.module.useLogger(logger);
      await stopDtm(dtm, true);
      await sleep(300); // not an assertion: the channel sees its connection closed, so the submit is refused a connection
      const waiting = msg.submitAndWait({ timeout: 20 });
      await sleep(1500); // not an assertion: DTM stays down across the channel's reconnect attempts (it backs off between them)
      dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, DTM_OPTIONS);
      const back = Date.now();
      const final = await waiting;

      expect(final).toMatchObject({ gid, status: 'succeed' });
      const [deposit] = await recorder.waitForCalls('/Deposit', 1, { gid });
      // the submit again reached DTM within about the channel's reconnect backoff (1 s, 1.2 s with jitter) and a look at DTM's record (1 s apart):
      // before the fix a submit again made during the backoff failed at once and the next came 3 s after the following look (4 s and more);
      // the bound leaves slack for a loaded machine below that
      expect(deposit.at - back).toBeLessThan(3500);
      expect(logger.lines.filter((w) => w.includes(gid))).toEqual([expect.stringMatching(/^warn DTM still holds \S+ as prepared, and its submit did not reach DTM \(.*ECONNREFUSED.*\): submitting it again under the same gid$/)]);
      expect(await stored(gid)).toMatchObject({ status: 'succeed' });
      expect(recorder.callsTo('/Deposit', gid)).toHaveLength(1);
      expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
    } finally {
      await grpcApp.close();
    }
  }, 60_000);

  it('DTM v1.19 takes the submit of a message it holds submitted, as it takes one it holds prepared (dtmsvr/api.go svcSubmit: no refusal; it runs the branches again): what makes the wait\'s submit again of a prepared message safe should another submit get through first', async () => {
    const gid = await app.client.generateGid();
    recorder.answer('/Held', 425); // ONGOING: DTM holds the message submitted
    const msg = app.client.newMsg(gid, { timeoutToFail: 30, retryInterval: 1 }).add(recorder.urlFor('/Held'), { n: 3 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    await msg.submit();
    await recorder.waitForCalls('/Held', 1, { gid });
    expect(await stored(gid)).toMatchObject({ status: 'submitted' });
    // straight to DTM (the module reads a refusal of its own transaction as taken): the same submit again
    const body = { gid, trans_type: 'msg', steps: [{ action: recorder.urlFor('/Held') }], payloads: ['{"n":3}'], query_prepared: recorder.urlFor('/QueryPrepared') };
    const again = await fetch(`${dtm.info.serverUrl}/submit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect({ status: again.status, body: await again.text() }).toEqual({ status: 200, body: expect.stringContaining('SUCCESS') });
    await recorder.waitForCalls('/Held', 2, { gid }); // DTM ran the branch again for it
    recorder.answer('/Held', 200);
    await triggerCron(dtm.info.serverUrl);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  });

  it('tccGlobalTransactionAndWait: a branch FAILURE is a result (failed, the reason), after DTM cancelled', async () => {
    const gid = await app.client.generateGid();
    recorder.answer('/TryNo', 409);
    const outcome = await app.client.tccGlobalTransactionAndWait(gid, async (tcc) => {
      await tcc.callBranch({}, recorder.urlFor('/TryNo'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'));
    });
    expect(outcome.status).toBe('failed');
    expect(outcome.result).toBeUndefined();
    expect(outcome.rollbackReason).toContain('recorder answered 409');
    expect(recorder.callsTo('/Cancel', gid)).toHaveLength(1);
  });

  it('xaGlobalTransactionAndWait: resolves with the body\'s result and DTM\'s final status', async () => {
    const gid = await app.client.generateGid();
    const outcome = await app.client.xaGlobalTransactionAndWait(gid, async () => 42, {}, { timeout: 20 });
    expect(outcome).toMatchObject({ gid, status: 'succeed', result: 42 });
    expect(await stored(gid)).toMatchObject({ status: 'succeed' });
    await expect(app.client.xaGlobalTransactionAndWait(gid, async () => 1)).rejects.toBeInstanceOf(DtmFailureError); // the gid is used
  });
});

describe('"DTM never got it" vs "DTM has it": a submit whose connection breaks', () => {
  /** A proxy in front of DTM that cuts the connection of every submit: before forwarding it, or after DTM answered. */
  let proxy: Server;
  /**
   * `before-once`: only the first submit of each gid is cut before DTM sees it; `mid`: DTM's answer is cut in
   * its middle (status line and half the body sent); `refuse`: every submit is answered 429 (a
   * gateway's rate limit) and never reaches DTM; `down-after`: DTM's answer passes, then the proxy
   * refuses connections for 1 s (DTM gone right after it answered: the status query that follows is refused);
   * `late-first`: the first submit is held (no answer: the caller's timeout passes) and reaches DTM
   * only when a second one comes, which follows it 0.5 s later (a submit stuck on the way, DTM slow to store it).
   */
  let cut: 'before' | 'before-once' | 'after' | 'mid' | 'refuse' | 'down-after' | 'late-first' = 'before';
  /** `late-first`: sends the held first submit to DTM, resolving once DTM answered it. */
  let releaseFirst: (() => Promise<void>) | undefined;
  /** Submits the proxy saw (a test resets it). */
  let submits = 0;
  /** Submits the proxy saw, by gid (a test clears it). */
  const submitsOf = new Map<string, number>();
  /** When set, a status query the proxy receives is held until this resolves, if `holdQuery.when(now)` says so (checked once per query). */
  let holdQuery: { when: (now: number) => boolean; held: () => void; release: Promise<void> } | undefined;
  let proxyUrl = '';
  let viaProxy: DtmTestApp;
  /** Set once the tests ended: a proxy down for 1 s stays down. */
  let closed = false;
  /** Waits until the proxy (down for 1 s after a `down-after` submit) takes connections again. */
  const proxyUp = async () => {
    while (!proxy.listening) await sleep(50);
  };
  let proxyPort = 0;
  /** Listens on the proxy's port again (down-after), trying again every 100 ms while something else holds it. */
  const listenAgain = () => {
    proxy.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') throw err;
      setTimeout(() => closed || listenAgain(), 100);
    });
    proxy.once('listening', () => proxy.removeAllListeners('error'));
    proxy.listen(proxyPort, '127.0.0.1');
  };

  beforeAll(async () => {
    proxyPort = await freePort();
    proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const submit = req.url?.endsWith('/submit') ?? false;
        const nth = submit ? ++submits : 0;
        const gid = submit ? gidOf(Buffer.concat(chunks)) : '';
        const nthOfGid = submit ? (submitsOf.get(gid) ?? 0) + 1 : 0;
        if (submit) submitsOf.set(gid, nthOfGid);
        const hold = holdQuery;
        if (hold && req.url?.includes('/query?') && hold.when(Date.now())) {
          holdQuery = undefined;
          hold.held();
          return void hold.release.then(() => {
            const target = new URL(req.url ?? '/', dtm.info.httpUrl);
            const forward = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
              res.writeHead(answer.statusCode ?? 502, { ...answer.headers, connection: 'close' });
              answer.pipe(res);
            });
            forward.on('error', () => req.socket.destroy());
            forward.end();
          });
        }
        if (submit && (cut === 'before' || (cut === 'before-once' && nthOfGid === 1))) return req.socket.destroy();
        if (submit && cut === 'refuse') {
          res.writeHead(429, { 'content-type': 'text/plain', connection: 'close' });
          return void res.end('rate limit exceeded');
        }
        const target = new URL(req.url ?? '/', dtm.info.httpUrl);
        if (submit && cut === 'late-first' && nth === 1) {
          // held until the second submit comes; then DTM gets it (and runs it), and the caller never hears
          releaseFirst = () =>
            new Promise<void>((resolve) => {
              const first = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
                answer.resume();
                answer.on('end', () => {
                  req.socket.destroy();
                  resolve();
                });
              });
              first.on('error', () => resolve());
              first.end(Buffer.concat(chunks));
            });
          return;
        }
        const pass = () => {
        const forward = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
          const body: Buffer[] = [];
          answer.on('data', (c: Buffer) => body.push(c));
          answer.on('end', () => {
            if (submit && cut === 'after') return req.socket.destroy(); // DTM has it; the caller never hears
            if (submit && cut === 'mid') {
              const whole = Buffer.concat(body);
              res.writeHead(answer.statusCode ?? 502, { ...answer.headers, connection: 'close' });
              res.write(whole.subarray(0, whole.length >> 1));
              return void setTimeout(() => req.socket.destroy(), 50); // DTM has it; the caller hears half of its answer
            }
            // no kept-alive connection: a cut of a reused one would be sent again by the module at once (http.transport.ts)
            res.writeHead(answer.statusCode ?? 502, { ...answer.headers, connection: 'close' });
            res.end(Buffer.concat(body));
            if (submit && cut === 'down-after') {
              proxy.close();
              setTimeout(() => closed || listenAgain(), 1000);
            }
          });
        });
        forward.on('error', () => req.socket.destroy());
        forward.end(Buffer.concat(chunks));
        };
        // the second submit reaches DTM after the first, once DTM ran it
        if (submit && cut === 'late-first' && nth === 2 && releaseFirst) return void releaseFirst().then(() => sleep(500)).then(pass);
        pass();
      });
    });
    // a port below the ephemeral range (freePort): the proxy closes it for 1 s and listens on it again
    // (down-after), and a port of listen(0) is one an outgoing connection or another file's listen(0)
    // can take meanwhile; the listen is tried again if it is taken for a moment all the same
    await new Promise<void>((resolve) => proxy.listen(proxyPort, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${proxyPort}/api/dtmsvr`;
    viaProxy = await startDtmApp({ config: { serverUrl: proxyUrl, timeout: 2 } });
  });
  afterAll(async () => {
    await viaProxy?.close();
    closed = true;
    proxy?.closeAllConnections();
    await new Promise((resolve) => proxy?.close(resolve));
  });
  beforeEach(async () => {
    holdQuery = undefined;
    await proxyUp();
  });

  it('cut before DTM saw it, and DTM then holds nothing: submitted again under the same gid (DTM can run a saga it failed to store, dtm-store-stall.spec.ts); resolves with its outcome, the branch called once', async () => {
    cut = 'before-once';
    submits = 0;
    const gid = await app.client.generateGid();
    const final = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/Never'), {}).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(submits).toBe(2);
    expect((await stored(gid))?.status).toBe('succeed');
    expect(recorder.callsTo('/Never', gid)).toHaveLength(1);
  });

  it('a message prepared first, its submit cut before DTM saw it: DTM holds it prepared, so submitAndWait sends the submit again (long before DTM\'s back-check); the branch called once', async () => {
    cut = 'before-once';
    submits = 0;
    const gid = await app.client.generateGid();
    const msg = viaProxy.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.urlFor('/Deposit'), { amount: 1 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const final = await msg.submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(submits).toBe(2);
    expect((await stored(gid))?.status).toBe('succeed');
    expect(recorder.callsTo('/Deposit', gid)).toHaveLength(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  });

  it('every submit cut before DTM saw it: DtmOutcomeUnknownError with lastStatus "absent" (submit again, same gid), never DtmUnavailableError; DTM holds nothing', async () => {
    cut = 'before';
    const gid = await app.client.generateGid();
    const error = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/Never'), {}).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'absent' });
    expect((error as Error).message).toContain('under the same gid');
    expect(error).not.toBeInstanceOf(DtmUnavailableError);
    expect(await stored(gid)).toBeNull();
    expect(recorder.callsTo('/Never', gid)).toHaveLength(0);
  });

  it('cut after DTM accepted it: not an error; the wait finds the transaction and resolves with its outcome', async () => {
    cut = 'after';
    const gid = await app.client.generateGid();
    const final = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/Once'), {}).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/Once', gid)).toHaveLength(1);
  });

  it('tccGlobalTransactionAndWait, every submit cut before DTM saw it: sent again until the wait ends, then DtmOutcomeUnknownError "still prepared" (no branch diagnosis: DTM calls none); DTM holds it prepared, nothing confirmed or cancelled', async () => {
    cut = 'before';
    submits = 0;
    const gid = await app.client.generateGid();
    const error = await viaProxy.client
      .tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({}, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')), { timeoutToFail: 60 }, { timeout: 5 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared', unfinished: [] });
    expect((error as Error).message).toContain('DTM still holds it prepared, so no submit of it got stored');
    expect(submits).toBeGreaterThanOrEqual(2); // the first, and again once DTM still held it prepared 3 s later
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });
    expect(recorder.callsTo('/Try', gid)).toHaveLength(1);
    expect([...recorder.callsTo('/Confirm', gid), ...recorder.callsTo('/Cancel', gid)]).toEqual([]);
    await app.client.forceStop(gid); // ends it now (DTM calls no branch), not at its timeout in 60 s
  });

  it('tccGlobalTransactionAndWait, its submit cut before DTM saw it, the app closed while the wait\'s status query (the one that would send the submit again) is under way: nothing is submitted after close(); DtmOutcomeUnknownError "the app closed while waiting", DTM holds it prepared', async () => {
    cut = 'before';
    submits = 0;
    const closing = await startDtmApp({ config: { serverUrl: proxyUrl, timeout: 2 } });
    const gid = await app.client.generateGid();
    let release!: () => void;
    let held!: () => void;
    const queryHeld = new Promise<void>((resolve) => (held = resolve));
    // the first status query of the wait (after the cut submit) starts its 3 s count of "not stored": hold the one that comes 2.9 s later
    let firstWaitQuery: number | undefined;
    holdQuery = {
      when: (now) => submits > 0 && now - (firstWaitQuery ??= now) >= 2900,
      held,
      release: new Promise<void>((resolve) => (release = resolve)),
    };
    const run = closing.client
      .tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({}, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')), { timeoutToFail: 60 }, { timeout: 30 })
      .catch((e: unknown) => e);
    await queryHeld;
    expect(submits).toBe(1);
    await closing.close();
    await sleep(200);
    release();
    const error = await run;
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
    expect((error as Error).message).toContain('the app closed while waiting');
    await sleep(500);
    expect(submits).toBe(1); // the cut one only: none sent after close()
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });
    expect([...recorder.callsTo('/Confirm', gid), ...recorder.callsTo('/Cancel', gid)]).toEqual([]);
    await app.client.forceStop(gid);
  });

  it('msg doAndSubmit: the local transaction committed, its submit cut before DTM saw it: DtmOutcomeUnknownError (status prepared, DTM asked), never DtmUnavailableError ("run it again" would run the business twice); DTM holds it prepared', async () => {
    cut = 'before';
    const gid = await app.client.generateGid();
    let runs = 0;
    const error = await viaProxy.client
      .newMsg(gid, { timeoutToFail: 60 })
      .add(recorder.urlFor('/Deliver'), { order: 1 })
      .doAndSubmit(recorder.urlFor('/QueryPrepared'), async () => {
        runs++;
        return 'order saved';
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).not.toBeInstanceOf(DtmUnavailableError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
    expect((error as Error).message).toContain('Do not run the local transaction again');
    // DTM was asked after the cut submit: what comes next, and that a submit still on its way may take
    expect((error as Error).message).toMatch(/committed, but its submit did not get through \(.*\): DTM, asked after it, holds the message prepared \(a submit still on its way to DTM may yet take it\)\. DTM back-checks its query-prepared target once its timeout_to_fail \(60 s\) passed/);
    expect(runs).toBe(1);
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });
    await app.client.forceStop(gid); // tidy: not back-checked in 60 s
  });

  it('msg doAndSubmit: the local transaction committed, its submit cut after DTM accepted it: DTM, asked, holds it submitted (or delivered), so the submit took and doAndSubmit resolves with the business result; delivered once', async () => {
    cut = 'after';
    const gid = await app.client.generateGid();
    let runs = 0;
    const result = await viaProxy.client
      .newMsg(gid, { timeoutToFail: 60 })
      .add(recorder.urlFor('/CutDeliver'), { order: 7 })
      .doAndSubmit(recorder.urlFor('/QueryPrepared'), async () => {
        runs++;
        return 'order saved';
      });
    expect(result).toBe('order saved');
    expect(runs).toBe(1);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/CutDeliver', gid)).toHaveLength(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  });

  it('msg doAndSubmit: the local transaction committed, its submit refused by a gateway in front of DTM (429): DtmOutcomeUnknownError (status prepared), not a DtmServerError that reads as "the message failed"; DTM\'s back-check delivers it', async () => {
    cut = 'refuse';
    const gid = await app.client.generateGid();
    let runs = 0;
    const error = await viaProxy.client
      .newMsg(gid, { timeoutToFail: 1 })
      .add(recorder.urlFor('/GatewayDeliver'), { order: 4 })
      .doAndSubmit(recorder.urlFor('/QueryPrepared'), async () => {
        runs++;
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
    expect((error as Error).message).toMatch(/HTTP 429/);
    expect(runs).toBe(1);
    await sleep(1500);
    await triggerCron(dtm.info.serverUrl); // past its timeoutToFail: DTM back-checks it now
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/GatewayDeliver', gid)).toHaveLength(1);
  });

  it.each([
    ['submit', 5],
    ['submitAndWait', 6],
  ] as const)("msg prepare() then %s() refused by a gateway (429): DtmOutcomeUnknownError (status prepared), not the gateway's DtmServerError; DTM holds the message prepared", async (call, order) => {
    cut = 'refuse';
    const gid = await app.client.generateGid();
    const msg = viaProxy.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.urlFor('/GatewayDeliver'), { order });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const error = await (call === 'submit' ? msg.submit() : msg.submitAndWait({ timeout: 5 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });
    await app.client.forceStop(gid); // tidy: not back-checked in 60 s
  });

  it('msg prepare() then submit(): a submit cut after DTM accepted it is read from DTM\'s record, as for TCC: DTM holds it submitted (or delivered), so submit() resolves, never DtmUnavailableError ("run it again" would send the message twice under a new gid); DTM delivers once', async () => {
    cut = 'after';
    const gid = await app.client.generateGid();
    const msg = viaProxy.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.urlFor('/CutDeliver'), { order: 2 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const error = await msg.submit().catch((e: unknown) => e);
    expect(error).toBeUndefined();
    expect(['submitted', 'succeed']).toContain((await stored(gid))?.status);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/CutDeliver', gid)).toHaveLength(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  });

  it('msg prepare() then submit(): a submit cut before DTM saw it is DtmOutcomeUnknownError (status prepared: DTM, asked, holds it prepared) saying to submit it again or leave it to the back-check; submit() again on the same Msg is taken by DTM (v1.19 submits a message it holds prepared) and delivers once, no back-check', async () => {
    cut = 'before-once';
    submits = 0;
    const gid = await app.client.generateGid();
    const msg = viaProxy.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.urlFor('/AgainDeliver'), { order: 8 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const error = await msg.submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).not.toBeInstanceOf(DtmUnavailableError);
    expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
    expect((error as Error).message).toMatch(/^the submit of msg \S+ did not get through \(.*\): DTM, asked after it, holds the message prepared \(a submit still on its way to DTM may yet take it\)\. DTM back-checks its query-prepared target once its timeout_to_fail \(60 s\) passed and delivers it if the local transaction committed; or submit it again now: submit\(\) on the same Msg/);
    expect((error as Error).message).toContain('never send it again under a new gid');
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });
    expect(recorder.callsTo('/AgainDeliver', gid)).toHaveLength(0);
    await msg.submit();
    expect(submits).toBe(2);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/AgainDeliver', gid)).toHaveLength(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  });

  it('msg prepare() then submit() with waitResult, DTM\'s first round (a branch taking 4 s) outlasting lynx.dtm.timeout (2 s): DtmOutcomeUnknownError with the status DTM holds (submitted: DTM took it and delivers), not "prepared"; delivered', async () => {
    const gid = await app.client.generateGid();
    recorder.handle('/SlowDeliver', async () => {
      await sleep(4000);
      return 200;
    });
    const msg = app.client.newMsg(gid, { timeoutToFail: 60, waitResult: true, retryInterval: 1 }).add(recorder.urlFor('/SlowDeliver'), { order: 9 });
    await msg.prepare(recorder.urlFor('/QueryPrepared'));
    const error = await msg.submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'submitted' });
    expect((error as Error).message).toMatch(new RegExp(`^DTM took the submit of ${gid} and holds it "submitted", though its answer did not come`));
    expect((await stored(gid))?.status).not.toBe('prepared');
    expect((await app.client.waitForFinal(gid, { timeout: 40 })).status).toBe('succeed');
    expect(recorder.callsTo('/SlowDeliver', gid).length).toBeGreaterThanOrEqual(1);
    expect(recorder.callsTo('/QueryPrepared', gid)).toHaveLength(0);
  }, 60_000);

  it('executeMsg with waitForFinal, its submit cut after DTM accepted it: waits the outcome out and resolves succeed (DTM has the message), not DtmUnavailableError', async () => {
    cut = 'after';
    const gid = await app.client.generateGid();
    const result = await viaProxy.helper.executeMsg(gid, recorder.urlFor('/QueryPrepared'), [{ action: recorder.urlFor('/CutNotify'), data: { order: 3 } }], { timeoutToFail: 60, waitForFinal: { timeout: 20 } });
    expect(result.final?.status).toBe('succeed');
    expect(recorder.callsTo('/CutNotify', gid)).toHaveLength(1);
  });

  it('saga submit(): DTM\'s answer cut in its middle (DTM ran the saga) is not "could not reach ... check that the DTM server runs": the error says DTM got the request and its answer broke off', async () => {
    cut = 'mid';
    const gid = await app.client.generateGid();
    const error = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/MidCut'), {}).submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).not.toMatch(/could not reach|check that the DTM server runs/);
    expect((error as Error).message).toMatch(/answer .*HTTP 200.* broke off.* reached the DTM server/);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/MidCut', gid)).toHaveLength(1);
  });

  it('saga submit() with waitResult: DTM answers that its first round did not finish (a branch ONGOING), then cannot be asked its status: DtmOutcomeUnknownError, not the status query\'s DtmUnavailableError ("never got it"); DTM runs the saga', async () => {
    cut = 'down-after';
    recorder.answer('/FirstRoundOngoing', 425, 200);
    const gid = await app.client.generateGid();
    const error = await viaProxy.client.newSaga(gid, { waitResult: true, retryInterval: 1 }).add(recorder.urlFor('/FirstRoundOngoing'), {}).submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).not.toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toMatch(/DTM took the submit .*did not finish.*query.*ECONNREFUSED/);
    expect((error as Error).message).toContain('never start it again under a new gid');
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
  });

  it('saga submitAndWait() with waitResult, the same: waits it out and resolves with DTM\'s outcome, not DtmUnavailableError', async () => {
    cut = 'down-after';
    recorder.answer('/FirstRoundOngoing', 425, 200);
    const gid = await app.client.generateGid();
    const final = await viaProxy.client.newSaga(gid, { waitResult: true, retryInterval: 1 }).add(recorder.urlFor('/FirstRoundOngoing'), {}).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/FirstRoundOngoing', gid).length).toBeGreaterThanOrEqual(2);
  });

  it('saga submitAndWait(): its first submit reaches DTM only after the wait sent it again (DTM held no record meanwhile); DTM ran it and refuses the second ("current status \'succeed\'"): resolves succeed, not DtmGidInUseError', async () => {
    cut = 'late-first';
    submits = 0;
    releaseFirst = undefined;
    const gid = await app.client.generateGid();
    const outcome = await viaProxy.client
      .newSaga(gid)
      .add(recorder.urlFor('/LateFirst'), {})
      .submitAndWait({ timeout: 20 })
      .catch((e: unknown) => e);
    expect(submits).toBe(2);
    expect(outcome).not.toBeInstanceOf(DtmGidInUseError);
    expect(outcome).toMatchObject({ gid, status: 'succeed' });
    expect(recorder.callsTo('/LateFirst', gid)).toHaveLength(1);
  });

  it('TCC / XA submit refused by a gateway in front of DTM (429), with and without the wait: DtmOutcomeUnknownError (status prepared), not the gateway\'s DtmServerError that reads as "not sent"; DTM holds each prepared, nothing confirmed', async () => {
    cut = 'refuse';
    const tccBody = (tcc: Tcc) => tcc.callBranch({}, recorder.urlFor('/GatewayTry'), recorder.urlFor('/GatewayConfirm'), recorder.urlFor('/GatewayCancel'));
    const runs: [string, (gid: string) => Promise<unknown>][] = [
      ['tccGlobalTransaction', (gid) => viaProxy.client.tccGlobalTransaction(gid, tccBody, { timeoutToFail: 60 })],
      ['tccGlobalTransactionAndWait', (gid) => viaProxy.client.tccGlobalTransactionAndWait(gid, tccBody, { timeoutToFail: 60 }, { timeout: 5 })],
      ['xaGlobalTransaction', (gid) => viaProxy.client.xaGlobalTransaction(gid, async () => 1, { timeoutToFail: 60 })],
      ['xaGlobalTransactionAndWait', (gid) => viaProxy.client.xaGlobalTransactionAndWait(gid, async () => 1, { timeoutToFail: 60 }, { timeout: 5 })],
      ['executeTcc', (gid) => viaProxy.helper.executeTcc(gid, [{ try: recorder.urlFor('/GatewayTry'), confirm: recorder.urlFor('/GatewayConfirm'), cancel: recorder.urlFor('/GatewayCancel') }], { timeoutToFail: 60 })],
    ];
    for (const [name, run] of runs) {
      const gid = await app.client.generateGid();
      const error = await run(gid).catch((e: unknown) => e);
      expect([name, error]).toEqual([name, expect.any(DtmOutcomeUnknownError)]);
      expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
      expect((error as Error).message).toMatch(/HTTP 429/);
      expect(await stored(gid)).toMatchObject({ status: 'prepared' });
      expect(recorder.callsTo('/GatewayConfirm', gid)).toHaveLength(0);
      await app.client.forceStop(gid); // tidy: not rolled back for 60 s
    }
  });

  it('executeTcc / executeXa with waitForFinal, the first submit cut before DTM saw it: DTM holds the transaction prepared, so the submit is sent again (as tccGlobalTransactionAndWait does) and DTM confirms, not cancelled at its timeout', async () => {
    cut = 'before-once';
    submits = 0;
    submitsOf.clear();
    const tccGid = await app.client.generateGid();
    const xaGid = await app.client.generateGid();
    // both at once: each waits DTM's record out (3 s of "still prepared") before its submit is sent again
    const [tcc, xa] = await Promise.all([
      viaProxy.helper.executeTcc(tccGid, [{ try: recorder.urlFor('/LostTry'), confirm: recorder.urlFor('/LostConfirm'), cancel: recorder.urlFor('/LostCancel') }], {
        timeoutToFail: 60,
        waitForFinal: { timeout: 15 },
      }),
      viaProxy.helper.executeXa(xaGid, [{ action: recorder.urlFor('/LostXa'), data: {} }], { timeoutToFail: 60, waitForFinal: { timeout: 15 } }),
    ]);
    expect([submits, submitsOf.get(tccGid), submitsOf.get(xaGid)]).toEqual([4, 2, 2]);
    expect(tcc.final).toMatchObject({ gid: tccGid, status: 'succeed' });
    expect(recorder.callsTo('/LostConfirm', tccGid)).toHaveLength(1);
    expect(recorder.callsTo('/LostCancel', tccGid)).toHaveLength(0);
    expect(xa.final).toMatchObject({ gid: xaGid, status: 'succeed' });
  });

  it('TCC: a submit cut after DTM accepted it is read from DTM\'s record: DTM holds it submitted (or confirmed it meanwhile), so tccGlobalTransaction resolves with the body\'s result, never DtmUnavailableError nor "prepared"; DTM confirms once', async () => {
    cut = 'after';
    const gid = await app.client.generateGid();
    const outcome = await viaProxy.client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch({}, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')).then(() => 'tried'))
      .catch((e: unknown) => e);
    // DTM answered the submit at once (no waitResult): submitted, or succeed if it confirmed before the query; either way the submit took
    expect(outcome).toBe('tried');
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/Confirm', gid)).toHaveLength(1);
  });
});

/**
 * A TCP proxy in front of the DTM server at `serverUrl` (its host and port; HTTP or gRPC): every
 * request is forwarded; after `arm(start)`, the next request whose first line starts with `start`
 * (`''`: the next bytes the client sends, a gRPC call on an open connection) is forwarded and DTM's
 * answer replaced by a reset 1 s later (`end` `close`: the connection closed, as by a process that
 * died after reading the request; DTM acted on it; the caller never hears). `seen` lists the
 * requests forwarded, by their first line's start (`POST /api/dtmsvr/submit`).
 */
async function startResetProxy(serverUrl: string): Promise<{ url: string; seen: string[]; arm(start: string, end?: 'reset' | 'close'): void; close(): Promise<void> }> {
  const upstream = new URL(serverUrl);
  const seen: string[] = [];
  let armedFor: string | undefined;
  let ending: 'reset' | 'close' = 'reset';
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const up = net.connect(Number(upstream.port), upstream.hostname);
    sockets.add(client).add(up);
    let swallow = false;
    let end: 'reset' | 'close' = 'reset';
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (/^(GET|POST) /.test(text)) seen.push(text.slice(0, text.indexOf(' HTTP/')));
      if (armedFor !== undefined && text.startsWith(armedFor)) {
        armedFor = undefined;
        swallow = true;
        end = ending;
      }
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => {
      if (!swallow) return void client.write(chunk);
      up.destroy(); // DTM acted on the request and answered: the client gets a reset (or the connection closed) instead
      setTimeout(() => (end === 'reset' ? client.resetAndDestroy() : client.destroy()), 1000);
    });
    client.on('error', () => undefined);
    up.on('error', () => undefined);
    client.on('close', () => up.destroy());
    up.on('close', () => {
      if (!swallow) client.destroy();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}${upstream.pathname}`,
    seen,
    arm: (start, end = 'reset') => {
      armedFor = start;
      ending = end;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

describe('a kept-alive connection reset after DTM acted on the call (a proxy or DTM dying after its commit): never reported as refused', () => {
  let proxy: Awaited<ReturnType<typeof startResetProxy>>;
  /** The requests the proxy forwarded, by their first line's start. */
  let seen: string[] = [];
  let viaProxy: DtmTestApp;
  /** The gids whose abort the module reported failed (`abort.failed`). */
  const abortsFailed: string[] = [];
  beforeAll(async () => {
    proxy = await startResetProxy(dtm.info.serverUrl);
    seen = proxy.seen;
    viaProxy = await startDtmApp({
      config: { serverUrl: proxy.url, protocol: 'http', timeout: 5 },
      instrumentation: { hooks: { 'abort.failed': (e) => void abortsFailed.push(e.gid) } },
    });
  });
  afterAll(async () => {
    await viaProxy?.close();
    await proxy?.close();
  });
  beforeEach(() => {
    seen.length = 0;
  });

  it('saga submit(): DTM ran the saga; the resent submit\'s refusal ("current status \'succeed\'") is read as this saga\'s own: submit() resolves', async () => {
    const gid = await viaProxy.client.generateGid(); // through the proxy: the kept-alive connection the submit reuses
    proxy.arm('POST /api/dtmsvr/submit');
    await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submit();
    expect(seen.filter((r) => r.endsWith('/submit'))).toHaveLength(2); // sent again on a new connection after the reset
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/TransOut', gid)).toHaveLength(1);
  });

  it('saga submitAndWait(): resolves with DTM\'s outcome (succeed), the branch called once', async () => {
    const gid = await viaProxy.client.generateGid();
    proxy.arm('POST /api/dtmsvr/submit');
    const final = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/TransOut', gid)).toHaveLength(1);
  });

  it('saga whose gid DTM holds for another transaction, its submit resent: still DtmGidInUseError (the steps differ)', async () => {
    const gid = await viaProxy.client.generateGid();
    await app.client.newSaga(gid).add(recorder.urlFor('/Other'), {}).submitAndWait({ timeout: 20 });
    proxy.arm('POST /api/dtmsvr/submit');
    const error = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmGidInUseError);
    expect(recorder.callsTo('/TransOut', gid)).toHaveLength(0);
  });

  it('TCC: every branch confirmed after the resent submit\'s refusal: tccGlobalTransaction resolves with the body\'s result (no DtmFailureError)', async () => {
    const gid = await viaProxy.client.generateGid();
    const result = await viaProxy.client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch({ amount: 1 }, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'));
      proxy.arm('POST /api/dtmsvr/submit');
      return 'body done';
    });
    expect(result).toBe('body done');
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Try', '/Confirm']);
  });

  it('TCC abort resent after the reset, refused by DTM as already failed: done (the first reached DTM), not reported as an abort that failed', async () => {
    const gid = await viaProxy.client.generateGid();
    const bodyError = new Error('payment service down');
    const error = await viaProxy.client
      .tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch({ amount: 1 }, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'));
        proxy.arm('POST /api/dtmsvr/abort');
        throw bodyError;
      })
      .catch((e: unknown) => e);
    expect(error).toBe(bodyError);
    expect(seen.filter((r) => r.endsWith('/abort'))).toHaveLength(2);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    expect(abortsFailed).not.toContain(gid);
    expect(recorder.callsTo('/Cancel', gid)).toHaveLength(1);
  });

  it('TCC registerBranch reset after DTM stored the branch: not sent again (DTM would store it twice); the body fails, the transaction rolls back, nothing confirmed', async () => {
    const gid = await viaProxy.client.generateGid();
    proxy.arm('POST /api/dtmsvr/registerBranch');
    const error = await viaProxy.client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ amount: 1 }, recorder.urlFor('/Try'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toMatch(/ECONNRESET|reset/);
    expect(seen.filter((r) => r.endsWith('/registerBranch'))).toHaveLength(1);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    expect(recorder.callsTo('/Confirm', gid)).toHaveLength(0);
    expect(recorder.callsTo('/Try', gid)).toHaveLength(0);
  });
});

describe('DTM crashing after it got a saga\'s submit (the connection reset or closed before any answer): the same error over HTTP and gRPC, which says the submit may have reached DTM', () => {
  let proxy: Awaited<ReturnType<typeof startResetProxy>>;
  let grpcProxy: Awaited<ReturnType<typeof startResetProxy>>;
  const apps: Partial<Record<'http' | 'grpc', DtmTestApp>> = {};

  beforeAll(async () => {
    proxy = await startResetProxy(dtm.info.serverUrl);
    grpcProxy = await startResetProxy(`http://${dtm.info.grpcAddress}`);
    const grpcServer = new URL(grpcProxy.url).host;
    apps.http = await startDtmApp({ config: { serverUrl: proxy.url, protocol: 'http', timeout: 5 } });
    apps.grpc = await startDtmApp({ config: { serverUrl: dtm.info.serverUrl, grpcServer, protocol: 'grpc', timeout: 5 } });
  });
  afterAll(async () => {
    await apps.http?.close();
    await apps.grpc?.close();
    await proxy?.close();
    await grpcProxy?.close();
  });

  it.each([
    ['http', 'reset'],
    ['grpc', 'reset'],
    ['http', 'close'],
    ['grpc', 'close'],
  ] as const)('%s, the connection ended by a %s: DtmUnavailableError naming the broken connection and that the request may have reached DTM; DTM ran the saga once', async (protocol, end) => {
    const via = apps[protocol]!;
    // through the proxy: over gRPC, the connection the submit then goes on (over HTTP the submit gets a connection of its own: a reset of it is not sent again)
    const gid = protocol === 'grpc' ? await via.client.generateGid() : await app.client.generateGid();
    const saga = via.client.newSaga(gid).add(protocol === 'grpc' ? recorder.grpcTargetFor('/Crash') : recorder.urlFor('/Crash'), protocol === 'grpc' ? new Uint8Array() : {});
    if (protocol === 'grpc') grpcProxy.arm('', end);
    else proxy.arm('POST /api/dtmsvr/submit', end);
    const error = await saga.submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toMatch(/the request may or may not have reached the DTM server/);
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/Crash', gid)).toHaveLength(1);
  });

  it.each(['http', 'grpc'] as const)('%s: a TCC body that catches its failed registerBranch (reset after DTM stored the branch) and goes on is refused its submit: DtmUsageError naming the swallowed failure, the transaction aborted; DTM confirms no branch whose Try never ran', async (protocol) => {
    const via = apps[protocol]!;
    const gid = await app.client.generateGid();
    const target = (path: string) => (protocol === 'grpc' ? recorder.grpcTargetFor(path) : recorder.urlFor(path));
    const payload = protocol === 'grpc' ? new Uint8Array() : {};
    let swallowed: unknown;
    const error = await via.client
      .tccGlobalTransaction(gid, async (tcc) => {
        // over gRPC the prepare opened the connection through the proxy: its next call is the registration
        if (protocol === 'grpc') grpcProxy.arm('', 'reset');
        else proxy.arm('POST /api/dtmsvr/registerBranch', 'reset');
        await tcc.callBranch(payload, target('/SwallowTry'), target('/SwallowConfirm'), target('/SwallowCancel')).catch((e: unknown) => {
          swallowed = e;
        });
        return 'went on';
      })
      .catch((e: unknown) => e);
    expect(swallowed).toBeInstanceOf(DtmUnavailableError);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toMatch(/went on after registering its branch 01 failed .*never ran/);
    const final = await app.client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(final.branches.map((b) => `${b.op} ${b.status}`).sort()).toEqual(['cancel succeed', 'confirm prepared']); // DTM had stored the branch
    expect(recorder.callsTo('/SwallowTry', gid)).toHaveLength(0);
    expect(recorder.callsTo('/SwallowConfirm', gid)).toHaveLength(0);
  });
});

describe('DTM on a SQL store (MariaDB), which answers no steps or payloads: a resent submit is still recognised by the branches DTM holds', () => {
  let sqlStore: Awaited<ReturnType<typeof sqlStoreDtm>> | undefined;
  let proxy: Awaited<ReturnType<typeof startResetProxy>>;
  let viaProxy: DtmTestApp;
  let direct: DtmTestApp;

  beforeAll(async () => {
    sqlStore = await sqlStoreDtm('dtm-outcome-sql');
    proxy = await startResetProxy(sqlStore.info.serverUrl);
    viaProxy = await startDtmApp({ config: { serverUrl: proxy.url, protocol: 'http', timeout: 5 } });
    direct = await startDtmApp({ config: { serverUrl: sqlStore.info.serverUrl, protocol: 'http', timeout: 5 } });
  });
  afterAll(async () => {
    await viaProxy?.close();
    await direct?.close();
    await proxy?.close();
    await sqlStore?.stop();
  });
  beforeEach(() => {
    proxy.seen.length = 0;
  });

  it('saga submit(): DTM ran the saga; the resent submit\'s refusal ("current status \'succeed\'") is this saga\'s own: submit() resolves, not DtmGidInUseError', async () => {
    const gid = await viaProxy.client.generateGid(); // through the proxy: the kept-alive connection the submit reuses
    proxy.arm('POST /api/dtmsvr/submit');
    const error = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).add(recorder.urlFor('/TransIn'), '', { amount: 1 }).submit().catch((e: unknown) => e);
    expect(proxy.seen.filter((r) => r.endsWith('/submit'))).toHaveLength(2);
    expect(error).toBeUndefined();
    expect((await direct.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/TransOut', '/TransIn']);
  });

  it('saga submitAndWait(): resolves with DTM\'s outcome (succeed), the branches called once', async () => {
    const gid = await viaProxy.client.generateGid();
    proxy.arm('POST /api/dtmsvr/submit');
    const final = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/TransOut', gid)).toHaveLength(1);
  });

  it('a message submitted whole: submit() resolves, the branch called once', async () => {
    const gid = await viaProxy.client.generateGid();
    proxy.arm('POST /api/dtmsvr/submit');
    const error = await viaProxy.client.newMsg(gid).add(recorder.urlFor('/Notify'), { amount: 1 }).submit().catch((e: unknown) => e);
    expect(error).toBeUndefined();
    expect((await direct.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/Notify', gid)).toHaveLength(1);
  });

  it.each([
    ['another target', (url: (p: string) => string) => [url('/Other'), url('/TransOutRevert'), { amount: 1 }] as const],
    ['another payload', (url: (p: string) => string) => [url('/TransOut'), url('/TransOutRevert'), { amount: 2 }] as const],
  ])('a saga whose gid DTM holds for another saga (%s), its submit resent: still DtmGidInUseError', async (_what, other) => {
    const gid = await viaProxy.client.generateGid();
    const [action, compensate, payload] = other(recorder.urlFor);
    await direct.client.newSaga(gid).add(action, compensate, payload).submitAndWait({ timeout: 20 });
    recorder.reset();
    proxy.arm('POST /api/dtmsvr/submit');
    const error = await viaProxy.client.newSaga(gid).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmGidInUseError);
    expect(recorder.callsFor(gid)).toHaveLength(0);
  });
});

describe('gRPC: the submit of a prepared transaction answered by a gateway in front of DTM (a gRPC code DTM does not give it), as over HTTP', () => {
  /** The code the gateway answers DTM's Submit with (every other call of DTM's API passes); `undefined`: none refused. */
  let refuse: number | undefined;
  let gateway: GrpcServer;
  let client: Client;
  let viaGateway: DtmTestApp;
  const identity = (bytes: Buffer) => bytes;

  beforeAll(async () => {
    gateway = new GrpcServer();
    client = new Client(dtm.info.grpcAddress, credentials.createInsecure());
    for (const method of ['NewGid', 'Prepare', 'Submit', 'Abort', 'RegisterBranch']) {
      const path = `/dtmgimp.Dtm/${method}`;
      const handler = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        if (method === 'Submit' && refuse !== undefined) return callback({ code: refuse, details: 'refused by the gateway', metadata: new Metadata() } as never);
        client.makeUnaryRequest(path, identity, identity, call.request, new Metadata(), (err, reply) => callback(err, reply));
      };
      gateway.register(path, handler, identity, identity, 'unary');
    }
    const port = await new Promise<number>((resolve, reject) => gateway.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    viaGateway = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: `127.0.0.1:${port}`, timeout: 2 } });
  });
  afterAll(async () => {
    await viaGateway?.close();
    client?.close();
    gateway?.forceShutdown();
  });

  it.each([
    ['UNAVAILABLE', grpcStatus.UNAVAILABLE],
    ['RESOURCE_EXHAUSTED', grpcStatus.RESOURCE_EXHAUSTED],
    ['PERMISSION_DENIED', grpcStatus.PERMISSION_DENIED],
  ] as const)('%s: TCC, XA, a message prepared then submitted, doAndSubmit: DtmOutcomeUnknownError (status prepared), never an error that reads as "not sent"; DTM holds each prepared, nothing confirmed or delivered', async (_name, code) => {
    refuse = code;
    const tccBody = (tcc: Tcc) => tcc.callBranch(new Uint8Array(), recorder.grpcTargetFor('/GwTry'), recorder.grpcTargetFor('/GwConfirm'), recorder.grpcTargetFor('/GwCancel'));
    const runs: [string, (gid: string) => Promise<unknown>][] = [
      ['tccGlobalTransaction', (gid) => viaGateway.client.tccGlobalTransaction(gid, tccBody, { timeoutToFail: 60 })],
      ['xaGlobalTransaction', (gid) => viaGateway.client.xaGlobalTransaction(gid, async () => 1, { timeoutToFail: 60 })],
      ['msg prepare() then submit()', async (gid) => {
        const msg = viaGateway.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.grpcTargetFor('/GwDeliver'), new Uint8Array());
        await msg.prepare(recorder.grpcTargetFor('/GwQueryPrepared'));
        return msg.submit();
      }],
      ['doAndSubmit', (gid) => viaGateway.client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.grpcTargetFor('/GwDeliver'), new Uint8Array()).doAndSubmit(recorder.grpcTargetFor('/GwQueryPrepared'), async () => 'committed')],
    ];
    try {
      for (const [name, run] of runs) {
        const gid = await app.client.generateGid();
        const error = await run(gid).catch((e: unknown) => e);
        expect([name, error]).toEqual([name, expect.any(DtmOutcomeUnknownError)]);
        expect(error).toMatchObject({ gid, lastStatus: 'prepared' });
        expect(await stored(gid)).toMatchObject({ status: 'prepared' });
        expect(recorder.callsTo('/GwConfirm', gid)).toHaveLength(0);
        expect(recorder.callsTo('/GwDeliver', gid)).toHaveLength(0);
        await app.client.forceStop(gid); // tidy: not rolled back for 60 s
      }
    } finally {
      refuse = undefined;
    }
  });
});

describe('infrastructure between DTM or the app and a branch is named as such', () => {
  it('a 502 / 503 / 504 answered for a TCC Try: the error and DTM\'s rollback reason name a proxy or gateway, not the branch\'s protocol', async () => {
    for (const status of [502, 503, 504]) {
      const gid = await app.client.generateGid();
      recorder.answer('/GatewayTry', { status, body: 'upstream connect error' });
      const error = await app.client
        .tccGlobalTransaction(gid, (tcc) => tcc.callBranch({}, recorder.urlFor('/GatewayTry'), recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel')))
        .catch((e: unknown) => e);
      expect((error as Error).message).toMatch(new RegExp(`answered HTTP ${status} \\(.*\\): most likely not the branch itself but a proxy, load balancer or gateway`));
      expect((error as Error).message).not.toContain('a branch must answer 200');
      const final = await app.client.waitForFinal(gid, { timeout: 20 });
      expect(final.rollbackReason).toContain(`HTTP ${status}`);
      expect(final.rollbackReason).toContain('proxy, load balancer or gateway');
    }
  });

  /**
   * A gateway in front of a gRPC server it cannot reach, as proxies answer then: every call gets a
   * plain `HTTP 503` (nginx's `grpc_pass`), or gRPC UNAVAILABLE in a trailers-only answer (Envoy's
   * "upstream connect error"). `paths`: the calls it got.
   */
  async function grpcGateway(answer: 'http 503' | 'grpc unavailable' | 'silent'): Promise<{ address: string; paths: string[]; close(): Promise<void> }> {
    const paths: string[] = [];
    const server = createHttp2Server();
    const sessions = new Set<ServerHttp2Session>();
    server.on('session', (session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    server.on('stream', (stream, headers) => {
      paths.push(String(headers[':path']));
      stream.on('error', () => undefined);
      stream.resume();
      if (answer === 'silent') return; // takes the call, never answers
      if (answer === 'http 503') {
        stream.respond({ ':status': 503, 'content-type': 'text/plain', server: 'nginx' });
        stream.end('no live upstreams');
      } else {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'upstream connect error or disconnect/reset before headers', server: 'envoy' }, { endStream: true });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
      paths,
      close: () => {
        for (const session of sessions) session.destroy();
        return new Promise((resolve) => server.close(() => resolve()));
      },
    };
  }

  it.each([
    ['http 503', 'HTTP 503 \\(Service Unavailable\\) to a gRPC call'],
    ['grpc unavailable', 'gRPC UNAVAILABLE'],
  ] as const)('gRPC to DTM through a gateway that answers %s: DtmUnavailableError naming the gateway; grpc-js\'s own "no connection" is not named so', async (answer, named) => {
    const gateway = await grpcGateway(answer);
    const viaGateway = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: gateway.address, timeout: 2 } });
    try {
      const error = await viaGateway.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(new RegExp(`^${gateway.address}/dtmgimp.Dtm/NewGid answered ${named}: most likely from a proxy, load balancer or gateway in front of the DTM server`));
      expect(gateway.paths).toEqual(['/dtmgimp.Dtm/NewGid']);
    } finally {
      await viaGateway.close();
      await gateway.close();
    }
    // nothing listening at all: grpc-js's own UNAVAILABLE, no answer from anyone
    const closed = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: gateway.address, timeout: 2 } });
    try {
      const error = await closed.client.generateGid().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(/^could not reach .*ECONNREFUSED/);
      expect((error as Error).message).not.toContain('proxy');
    } finally {
      await closed.close();
    }
  });

  it('gRPC: a TCC Try behind a gateway that answers UNAVAILABLE: the error and DTM\'s rollback reason name the gateway, not the branch', async () => {
    const gateway = await grpcGateway('grpc unavailable');
    const grpcApp = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, timeout: 2 } });
    try {
      const gid = await grpcApp.client.generateGid();
      const target = `${gateway.address}/recorder.Branches/GatewayTry`;
      const error = await grpcApp.client
        .tccGlobalTransaction(gid, (tcc) => tcc.callBranch(new Uint8Array(0), target, recorder.grpcTargetFor('/Confirm'), recorder.grpcTargetFor('/Cancel')))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(/^the branch .*GatewayTry answered gRPC UNAVAILABLE: most likely not the branch itself but a proxy, load balancer or gateway/);
      expect(gateway.paths).toEqual(['/recorder.Branches/GatewayTry']);
      const final = await grpcApp.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain('gRPC UNAVAILABLE');
      expect(final.rollbackReason).toContain('proxy, load balancer or gateway');
      expect(recorder.callsTo('/Cancel', gid)).toHaveLength(1);
    } finally {
      await grpcApp.close();
      await gateway.close();
    }
  });

  it('gRPC: a TCC Try that takes the call and never answers: "no complete answer from the branch" (not "could not reach") at the branch timeout, in the error and DTM\'s rollback reason', async () => {
    const silent = await grpcGateway('silent');
    const grpcApp = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, timeout: 2, branchTimeout: 1 } });
    try {
      const gid = await grpcApp.client.generateGid();
      const target = `${silent.address}/recorder.Branches/SilentTry`;
      const started = Date.now();
      const error = await grpcApp.client
        .tccGlobalTransaction(gid, (tcc) => tcc.callBranch(new Uint8Array(0), target, recorder.grpcTargetFor('/Confirm'), recorder.grpcTargetFor('/Cancel')))
        .catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(/^no complete answer from the branch .*SilentTry within its timeout \(1 s\), on a connection it accepted \(Deadline exceeded .*remote_addr=/);
      expect(silent.paths).toEqual(['/recorder.Branches/SilentTry']);
      const final = await grpcApp.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain(`no complete answer from the branch ${target} within its timeout (1 s)`);
      expect(recorder.callsTo('/Cancel', gid)).toHaveLength(1);
    } finally {
      await grpcApp.close();
      await silent.close();
    }
  });

  it('a Try\'s answer cut in its middle: the error and DTM\'s rollback reason say the branch got the call and its answer broke off, not "could not reach the branch"', async () => {
    const cutting = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '40' });
      res.write('{"dtm_result":"SUCC');
      setTimeout(() => req.socket.destroy(), 50);
    });
    await new Promise<void>((resolve) => cutting.listen(0, '127.0.0.1', resolve));
    try {
      const gid = await app.client.generateGid();
      const url = `http://127.0.0.1:${(cutting.address() as { port: number }).port}/try`;
      const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({}, url, recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'))).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).not.toMatch(/could not reach/);
      expect((error as Error).message).toMatch(/answer of the branch .*HTTP 200.* broke off.* reached the branch/);
      const final = await app.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toMatch(/broke off/);
    } finally {
      await new Promise((resolve) => cutting.close(resolve));
    }
  });

  it('a connection reset in the middle of a Try names the reset and who may have done it', async () => {
    const resetting = createServer((req) => req.socket.destroy());
    await new Promise<void>((resolve) => resetting.listen(0, '127.0.0.1', resolve));
    try {
      const gid = await app.client.generateGid();
      const url = `http://127.0.0.1:${(resetting.address() as { port: number }).port}/try`;
      const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({}, url, recorder.urlFor('/Confirm'), recorder.urlFor('/Cancel'))).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(/ECONNRESET: the connection was reset, by the branch \(crashed or restarting\) or by a proxy \/ load balancer/);
    } finally {
      await new Promise((resolve) => resetting.close(resolve));
    }
  });
});

describe('gRPC: DTM passes a gRPC branch\'s status through to a submit with waitResult (its first round met it; DTM stored the transaction submitted)', () => {
  let grpcApp: DtmTestApp;
  beforeAll(async () => {
    grpcApp = await startDtmApp({ config: { protocol: 'grpc', serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, timeout: 2 } });
  });
  afterAll(async () => {
    await grpcApp?.close();
  });

  // dtmsvr/trans_status.go getBranchResult wraps the branch's error with %w, and grpc-go keeps a wrapped status's code
  it('a Confirm whose method the branch does not serve (UNIMPLEMENTED, passed through): DtmOutcomeUnknownError, not a definite DtmServerError; DTM holds it submitted, retrying the Confirm', async () => {
    const gid = await grpcApp.client.generateGid();
    const unserved = `${recorder.grpcAddress}/recorder.Recorder/NotServedConfirm`; // the recorder registers a method only when a test asks for its target
    const error = await grpcApp.client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch(new Uint8Array(0), recorder.grpcTargetFor('/PtTry'), unserved, recorder.grpcTargetFor('/PtCancel')), { waitResult: true, retryInterval: 60 })
      .catch((e: unknown) => e);
    const status = (await stored(gid))?.status;
    await grpcApp.client.forceStop(gid).catch(() => undefined);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as Error).message).toContain('gRPC status 12');
    expect(status).toBe('submitted');
  });

  it('a Confirm DTM cannot reach (UNAVAILABLE, passed through): the error names both causes, a proxy in front of DTM or a branch DTM could not reach, not "DTM itself never answers UNAVAILABLE"; DtmOutcomeUnknownError, DTM holds it submitted', async () => {
    const gid = await grpcApp.client.generateGid();
    const error = await grpcApp.client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch(new Uint8Array(0), recorder.grpcTargetFor('/UnTry'), '127.0.0.1:1/recorder.Recorder/UnConfirm', '127.0.0.1:1/recorder.Recorder/UnCancel'), { waitResult: true, retryInterval: 60 })
      .catch((e: unknown) => e);
    const status = (await stored(gid))?.status;
    await grpcApp.client.forceStop(gid).catch(() => undefined);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    const message = (error as Error).message;
    expect(message).not.toContain('DTM itself never answers UNAVAILABLE');
    expect(message).toMatch(/answered gRPC UNAVAILABLE: most likely from a proxy, load balancer or gateway in front of the DTM server, .*or, to a submit with waitResult, from DTM itself passing on the UNAVAILABLE of a gRPC branch it could not reach/);
    expect(status).toBe('submitted');
  });
});

describe('a prepare DTM stored whose answer never came (DtmUnavailableError before the body ran): what running it again may do', () => {
  /** A TCP proxy in front of DTM that, while `hold` is set, forwards a prepare to DTM and never passes its answer on. */
  let proxy: AnswerSwallowingProxy;
  let hold = false;
  let viaProxy: DtmTestApp;
  beforeAll(async () => {
    proxy = await answerSwallowingProxy(dtm.info.serverUrl, (request) => hold && request.startsWith('POST /api/dtmsvr/prepare'));
    // its held prepare is given up after 1 s (DTM stores a prepare within milliseconds)
    viaProxy = await startDtmApp({ config: { serverUrl: proxy.url, timeout: 1 } });
  });
  afterAll(async () => {
    await viaProxy?.close();
    await proxy?.close();
  });

  it.each(['tcc', 'xa'] as const)('%s: DTM holds the first prepare (with no branch) until its timeoutToFail, so the same gid again is DtmGidInUseError, its body not run; a new gid runs', async (kind) => {
    const ran: string[] = [];
    const run = (client: DtmTestApp['client'], gid: string) =>
      kind === 'tcc'
        ? client.tccGlobalTransaction(gid, async () => void ran.push(gid), { timeoutToFail: 60 })
        : client.xaGlobalTransaction(gid, async () => void ran.push(gid), { timeoutToFail: 60 });
    const gid = await app.client.generateGid();
    hold = true;
    const first = await run(viaProxy.client, gid).catch((e: unknown) => e);
    hold = false;
    expect(first).toBeInstanceOf(DtmUnavailableError);
    expect(await stored(gid)).toMatchObject({ status: 'prepared' });

    const again = await run(app.client, gid).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(DtmGidInUseError);
    expect(ran).toEqual([]);
    const fresh = await app.client.generateGid();
    await run(app.client, fresh);
    expect(ran).toEqual([fresh]);
    await app.client.forceStop(gid); // tidy: DTM would roll it back at its timeoutToFail
  });

  it('msg: the same message (same branches and payloads) prepared again under the same gid goes on', async () => {
    const gid = await app.client.generateGid();
    const msg = (client: DtmTestApp['client']) => client.newMsg(gid, { timeoutToFail: 60 }).add(recorder.urlFor('/HeldNotify'), { order: 9 });
    hold = true;
    const first = await msg(viaProxy.client).prepare(recorder.urlFor('/QueryPrepared')).catch((e: unknown) => e);
    hold = false;
    expect(first).toBeInstanceOf(DtmUnavailableError);
    const again = msg(app.client);
    await again.prepare(recorder.urlFor('/QueryPrepared'));
    await again.submit();
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(recorder.callsTo('/HeldNotify', gid)).toHaveLength(1);
  });
});
