// A wait's submit again over gRPC, DTM back (its HTTP API answering the wait's look) while the
// DtmClient's channel to DTM's gRPC API still backs off its reconnect: grpc-js fails a call at once,
// without sending it, in TRANSIENT_FAILURE. A real grpc-js channel against a gRPC server on this host
// that starts listening only after the channel's connection was refused.
import { afterEach, describe, expect, it } from '@jest/globals';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { DtmClient, DtmOutcomeUnknownError, DtmUnavailableError, resolveDtmConfig } from 'nestjs-dtm';
import { freeLocalPort } from 'nestjs-dtm/testing';
import type { TransactionRecord } from '../../lib/transport/dtm.types.js';
import type { DtmTransport, TransactionRequest } from '../../lib/transport/dtm-transport.js';
import type { SubmittedHere, TransactionRuntime } from '../../lib/transactions/transaction-runtime.js';

const identity = (bytes: Buffer): Buffer => bytes;

/** A gRPC server with DTM's Submit alone (an empty reply), at `127.0.0.1:port`: the times its submits arrived. */
async function dtmGrpcServer(port: number): Promise<{ submits: number[]; close(): Promise<void> }> {
  const submits: number[] = [];
  const server = new Server();
  const method = { path: '/dtmgimp.Dtm/Submit', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
  server.addService({ Submit: method }, {
    Submit: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      submits.push(Date.now());
      callback(null, Buffer.alloc(0));
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return { submits, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

const closing: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0)) await Promise.resolve().then(close).catch(() => undefined);
});

/** A DtmClient over gRPC to DTM's gRPC API at `127.0.0.1:port` (closed after the test), and its gRPC transport. */
function grpcClient(port: number): { client: DtmClient; grpc: DtmTransport } {
  const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: 'http://dtm:36789/api/dtmsvr', grpcServer: `127.0.0.1:${port}`, protocol: 'grpc', timeout: 2 } }, {}));
  closing.push(() => client.onModuleDestroy());
  return { client, grpc: (client as unknown as { transport(protocol: 'grpc'): DtmTransport }).transport('grpc') };
}

/** `request` submitted over `grpc` with nothing listening: the error of its refused connection (the channel then backs off its reconnect). */
async function refusedSubmit(grpc: DtmTransport, request: TransactionRequest): Promise<Error> {
  return (await grpc.submit(request).then(
    () => undefined,
    (e: unknown) => e as Error,
  )) as Error;
}

describe("a wait's submit again over gRPC while the channel to DTM backs off its reconnect", () => {
  it('waits for the channel to connect and sends it then, within about the backoff (1 s); before, it failed at once and the next went 3 s later', async () => {
    const port = await freeLocalPort();
    const { client, grpc } = grpcClient(port);
    const request = { gid: 'gid-g', transType: 'tcc', options: { timeoutToFail: 30, branchTimeout: 3, branchHeaders: {} } } as TransactionRequest;
    // the first submit: nothing listens, connection refused; the channel now backs off before its next attempt
    const lost = await refusedSubmit(grpc, request);
    expect(lost).toBeInstanceOf(DtmUnavailableError);
    expect(lost.message).toContain('ECONNREFUSED');
    const server = await dtmGrpcServer(port);
    closing.push(() => server.close());
    const back = Date.now();
    // DTM's record (over HTTP, answering at once): prepared until a submit reached DTM
    const warnings: string[] = [];
    Object.assign(client as unknown as object, {
      http: { query: async (gid: string) => ({ gid, status: server.submits.length > 0 ? 'succeed' : 'prepared', transType: 'tcc', branches: [] }) as unknown as TransactionRecord, close: () => undefined },
      logger: { warn: (message: string) => warnings.push(message) },
    });
    const submitted: SubmittedHere = { lost, again: () => grpc.submit(request), mayBeAbsent: false, transType: 'tcc', protocol: 'grpc' };
    const waitForFinal = (client as unknown as { runtime: TransactionRuntime }).runtime.waitForFinal;

    const final = await waitForFinal('gid-g', { timeout: 2.8, pollInterval: 0.05 }, submitted);

    expect(final).toMatchObject({ gid: 'gid-g', status: 'succeed' });
    expect(server.submits).toHaveLength(1);
    // grpc-js's next attempt comes within its backoff (1 s, 20 % jitter), counted from the refused one (slack for a loaded
    // machine: before, the submit again failed at once and the next came 3 s later, past the wait's 2.8 s)
    expect(server.submits[0] - back).toBeLessThan(2500);
    expect(warnings).toEqual([expect.stringMatching(/^DTM still holds gid-g as prepared, and its submit did not reach DTM \(could not reach 127\.0\.0\.1:\d+\/dtmgimp\.Dtm\/Submit .*ECONNREFUSED.*\): submitting it again under the same gid$/)]);
  });

  it('the app closing while the submit again waits for the channel: nothing is sent (the wait ends as closed)', async () => {
    const port = await freeLocalPort();
    const { client, grpc } = grpcClient(port);
    const request = { gid: 'gid-j', transType: 'tcc', options: { timeoutToFail: 30, branchTimeout: 3, branchHeaders: {} } } as TransactionRequest;
    const lost = await refusedSubmit(grpc, request);
    const server = await dtmGrpcServer(port);
    closing.push(() => server.close());
    Object.assign(client as unknown as object, {
      http: { query: async (gid: string) => ({ gid, status: 'prepared', transType: 'tcc', branches: [] }) as unknown as TransactionRecord, close: () => undefined },
      // the app closes right as the wait warns that it submits again
      logger: { warn: () => void client.onModuleDestroy() },
    });
    const submitted: SubmittedHere = { lost, again: () => grpc.submit(request), mayBeAbsent: false, transType: 'tcc', protocol: 'grpc' };
    const waitForFinal = (client as unknown as { runtime: TransactionRuntime }).runtime.waitForFinal;

    const error = await waitForFinal('gid-j', { timeout: 5, pollInterval: 0.05 }, submitted).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as Error).message).toMatch(/^the app closed while waiting for the outcome of gid-j \(last known status "prepared"\)/);
    expect(server.submits).toEqual([]);
  });

  it('a channel not backing off is not waited for (connected() at once): connected, or never used', async () => {
    const port = await freeLocalPort();
    const { grpc } = grpcClient(port);
    // at once: far below the 5 s it is allowed (slack for a loaded machine)
    let started = performance.now();
    await grpc.connected!(5000);
    expect(performance.now() - started).toBeLessThan(500);
    const server = await dtmGrpcServer(port);
    closing.push(() => server.close());
    await grpc.submit({ gid: 'gid-h', transType: 'tcc', options: { timeoutToFail: 30, branchTimeout: 3, branchHeaders: {} } } as TransactionRequest);
    started = performance.now();
    await grpc.connected!(5000);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('bounded: a channel that cannot connect is waited for `withinMs` at most', async () => {
    const port = await freeLocalPort();
    const { grpc } = grpcClient(port);
    await expect(grpc.submit({ gid: 'gid-i', transType: 'tcc', options: { timeoutToFail: 30, branchTimeout: 3, branchHeaders: {} } } as TransactionRequest)).rejects.toBeInstanceOf(DtmUnavailableError);
    const started = performance.now();
    await grpc.connected!(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    // below the 2 s it waits at most otherwise (slack for a loaded machine)
    expect(performance.now() - started).toBeLessThan(1500);
  });
});
