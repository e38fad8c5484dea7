// The chaos suite's proxy in front of the bank's gRPC server (test/support/chaos/chaos.ts, protocol
// 'grpc'): a grpc-js server that takes every unary call to the given method paths as raw bytes and
// forwards it, bytes and metadata (dtm-* keys, branch headers) as they came, to the bank over a
// connection of its own, with the fault the caller picks for it, as the HTTP proxy does:
// - 'error500': answered INTERNAL without reaching the bank (DTM retries);
// - 'delay': held past the branch timeout, then forwarded (DTM gave up on the call and retries;
//   the late call still runs at the bank);
// - 'duplicate': forwarded twice at once, answered with the first answer;
// - 'lostAnswer': forwarded, run and committed at the bank, then answered UNAVAILABLE;
// - 'replay': forwarded and answered, then forwarded once more later (`replay`), its answer dropped.
// Forwarded calls get a deadline of their own (not the caller's): a late call runs at the bank as a
// late HTTP request does. While the bank is down, a call is answered UNAVAILABLE at once.
// `watch` sees each call's dtm-* keys: `hold` may take a call (forwarded without a fault, its answer held
// until the run lets it go), `answered` hears of every call the bank answered.
import { Client, Metadata, Server, credentials, status, type ServerUnaryCall, type ServiceError, type sendUnaryData } from '@grpc/grpc-js';
import type { CallKeys, Fault } from './chaos.js';
import { bindGrpcServer } from '../grpc.js';

/** A running gRPC fault proxy. */
export interface GrpcFaultProxy {
  /** `host:port` it listens on: the bank's `grpc_app_address`. */
  address: string;
  close(): Promise<void>;
}

/** What the run sees of the calls the proxy forwards (test/support/chaos/chaos.ts). */
export interface GrpcProxyWatch {
  /** For a call to hold: a function called once the call ran at the bank (forwarded without a fault), whose promise its answer waits for; else undefined. */
  hold(keys: CallKeys): (() => Promise<void>) | undefined;
  /** The bank answered the call of `keys`, with success (`ok`) or an error. */
  answered(keys: CallKeys, ok: boolean): void;
}

/** One answer of the bank, or of the proxy: a reply's bytes, or an error. */
type Answer = { error: Partial<ServiceError> & { code: number }; reply?: undefined } | { error?: undefined; reply: Buffer };

const same = (b: Buffer): Buffer => b;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Metadata grpc-js sets on each call itself. */
const OWN_KEYS = new Set(['user-agent', 'content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding']);

/**
 * Starts the proxy for the bank at `bankAddress` (`host:port`), serving `paths`
 * (`/chaos.PgBank/Out`, ...); `pick()` gives each call's fault (or none); `replay(deliver)` delivers a
 * replayed call later; `branchTimeout` in seconds; `watch` sees the calls ({@link GrpcProxyWatch}).
 */
export async function startGrpcFaultProxy(
  bankAddress: string,
  paths: string[],
  branchTimeout: number,
  pick: () => Fault | undefined,
  replay: (deliver: () => Promise<unknown>) => void,
  watch?: GrpcProxyWatch,
): Promise<GrpcFaultProxy> {
  // reconnects soon after a kill of the bank (grpc-js's default backoff grows to minutes)
  const bank = new Client(bankAddress, credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 });
  const forward = (path: string, bytes: Buffer, inbound: Metadata): Promise<Answer> => {
    const metadata = new Metadata();
    for (const [key, values] of Object.entries(inbound.toJSON())) {
      if (OWN_KEYS.has(key) || key.startsWith(':')) continue;
      for (const value of values) metadata.add(key, value);
    }
    return new Promise((resolve) => {
      try {
        bank.makeUnaryRequest(path, same, same, bytes, metadata, { deadline: Date.now() + 30_000 }, (err: ServiceError | null, reply?: Buffer) => {
          resolve(err ? { error: { code: err.code, details: err.details, metadata: err.metadata } } : { reply: reply ?? Buffer.alloc(0) });
        });
      } catch (err) {
        // the proxy was closed (its channel shut down) while this call waited: a delayed or replayed call at the end of a run
        resolve({ error: { code: status.UNAVAILABLE, details: `proxy closed: ${(err as Error).message}` } });
      }
    });
  };
  const handler = (path: string) => async (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
    const key = (name: string) => String(call.metadata.get(`dtm-${name}`)[0] ?? '');
    const keys: CallKeys = { gid: key('gid'), transType: key('trans_type'), branchId: key('branch_id'), op: key('op') };
    const answer = (a: Answer) => (a.error ? callback(a.error) : callback(null, a.reply));
    const held = watch?.hold(keys);
    if (held) {
      const ran = await forward(path, call.request, call.metadata);
      await held();
      return answer(ran);
    }
    const fault = pick();
    if (fault === 'error500') return answer({ error: { code: status.INTERNAL, details: 'injected error' } });
    if (fault === 'delay') await sleep(branchTimeout * 1000 + 500); // the caller gave up; the call arrives late
    if (fault === 'duplicate') {
      const both = await Promise.all([forward(path, call.request, call.metadata), forward(path, call.request, call.metadata)]);
      watch?.answered(keys, both.some((a) => !a.error));
      return answer(both[0]);
    }
    const got = await forward(path, call.request, call.metadata);
    watch?.answered(keys, !got.error);
    // a replayed resume the restarted bank answered with success ended the workflow as DTM's own would have
    if (fault === 'replay') replay(() => forward(path, call.request, call.metadata).then((a) => watch?.answered(keys, !a.error)));
    if (fault === 'lostAnswer') return answer({ error: { code: status.UNAVAILABLE, details: 'injected: answer lost' } });
    answer(got);
  };
  const server = new Server();
  const service = Object.fromEntries(
    paths.map((path) => [
      path,
      { path, requestStream: false, responseStream: false, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same },
    ]),
  );
  server.addService(service, Object.fromEntries(paths.map((path) => [path, handler(path)])));
  const port = await bindGrpcServer(server);
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      server.forceShutdown();
      bank.close();
    },
  };
}
