// Shared by bench/branch-overhead.ts and bench/barrier-overhead.ts: a cheap closed-loop gRPC load
// generator (raw bytes, DTM's branch metadata), a CPU-metered measurement of one process over a
// run, interleaved rounds with a rotating start, and the spread of a series (median, IQR, min–max).
import http2 from 'node:http2';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { closedLoopRun, processCpuMicros, quantile } from './load.js';

const identity = (b: Buffer): Buffer => b;

/** Which gRPC client generates the load: grpc-js (`Client.makeUnaryRequest`, identity serializers) or gRPC framed by hand on node:http2. */
export type GrpcClientKind = 'grpc-js' | 'http2';

/** A client of one gRPC server for load generation: unary calls of raw bytes with plain metadata. */
export interface GrpcCaller {
  /** Calls `path` (`/package.Service/Method`) with `bytes` as the request message, as-is, and `metadata`; resolves with the gRPC status code. */
  call(path: string, bytes: Buffer, metadata: Record<string, string>): Promise<number>;
  close(): void;
}

/**
 * A load-generating client of the gRPC server at `address` (`host:port`) on `channels` HTTP/2
 * connections, calls spread round-robin:
 * - `grpc-js`: @grpc/grpc-js `Client`s made as cheap per call as grpc-js allows (no retry
 *   machinery, which buffers every message for a possible retry; no channelz; a subchannel pool per
 *   client, so that `channels` clients are `channels` connections);
 * - `http2`: node:http2 sessions, each call one stream with the headers grpc-js sends (content-type
 *   application/grpc, te: trailers, the metadata), the message length-prefixed in one DATA frame,
 *   the status read from grpc-status. The same bytes reach the server, for about half grpc-js's
 *   CPU per call (grpc-js runs each call through its filter and interceptor stacks).
 */
export function grpcCaller(kind: GrpcClientKind, address: string, channels = 1): GrpcCaller {
  let next = 0;
  if (kind === 'grpc-js') {
    const clients = Array.from(
      { length: channels },
      () => new Client(address, credentials.createInsecure(), { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0, 'grpc.use_local_subchannel_pool': 1 }),
    );
    return {
      call(path, bytes, metadata) {
        const md = new Metadata();
        for (const key in metadata) md.set(key, metadata[key]);
        const client = clients[next++ % clients.length];
        return new Promise((resolve) => {
          client.makeUnaryRequest(path, identity, identity, bytes, md, {}, (err: ServiceError | null) => resolve(err ? err.code : status.OK));
        });
      },
      close: () => clients.forEach((c) => c.close()),
    };
  }
  const sessions = Array.from({ length: channels }, () => http2.connect(`http://${address}`));
  for (const session of sessions) session.on('error', () => undefined); // surfaces as failed calls
  const base = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', 'grpc-accept-encoding': 'identity', 'user-agent': 'bench-h2' };
  return {
    call(path, bytes, metadata) {
      const stream = sessions[next++ % sessions.length].request({ ...base, ':path': path, ...metadata });
      const prefix = Buffer.allocUnsafe(5);
      prefix[0] = 0;
      prefix.writeUInt32BE(bytes.length, 1);
      stream.end(Buffer.concat([prefix, bytes], 5 + bytes.length));
      return new Promise((resolve) => {
        let code: number | undefined;
        const read = (headers: http2.IncomingHttpHeaders) => {
          if (headers['grpc-status'] !== undefined) code = Number(headers['grpc-status']);
        };
        stream.on('response', read);
        stream.on('trailers', read);
        stream.on('error', () => (code ??= status.UNAVAILABLE));
        stream.on('close', () => resolve(code ?? status.UNKNOWN));
        stream.resume();
      });
    },
    close: () => sessions.forEach((s) => s.close()),
  };
}

/** DTM's branch-call metadata (`dtm-gid`, `dtm-trans_type`, `dtm-branch_id`, `dtm-op`), plus `extra`. */
export function branchMetadata(gid: string, op = 'action', extra: Record<string, string> = {}): Record<string, string> {
  return { 'dtm-gid': gid, 'dtm-trans_type': 'saga', 'dtm-branch_id': '01', 'dtm-op': op, ...extra };
}

/**
 * Closed-loop gRPC load: `concurrency` calls in flight on `caller`, each call `path` with the
 * request bytes and metadata `next(n)` gives the n-th call, for `seconds`. Throws when a call does
 * not answer OK.
 */
export async function grpcLoad(
  caller: GrpcCaller,
  concurrency: number,
  seconds: number,
  path: string,
  next: (n: number) => { bytes: Buffer; metadata: Record<string, string> },
): Promise<{ completed: number; elapsedSeconds: number }> {
  let n = 0;
  let bad: number | undefined;
  const result = await closedLoopRun(concurrency, seconds, async () => {
    const { bytes, metadata } = next(n++);
    const code = await caller.call(path, bytes, metadata);
    if (code !== status.OK) bad ??= code;
  });
  if (bad !== undefined) throw new Error(`${path}: a call answered gRPC status ${bad}`);
  return result;
}

/** A run's outcome: calls per second, and process `pid`'s CPU time (user + system) per call in µs (undefined without /proc). */
export interface Measured {
  rate: number;
  cpuPerCall?: number;
  /** This process's (the load generator's) CPU time per call, µs. */
  ownCpuPerCall: number;
}

/** Runs `run` while metering process `pid`'s CPU time and this process's own. */
export async function metered(pid: number, run: () => Promise<{ completed: number; elapsedSeconds: number }>): Promise<Measured> {
  const before = processCpuMicros(pid);
  const own = process.cpuUsage();
  const { completed, elapsedSeconds } = await run();
  const after = processCpuMicros(pid);
  const ownUsed = process.cpuUsage(own);
  if (completed === 0) throw new Error('no call completed');
  return {
    rate: completed / elapsedSeconds,
    cpuPerCall: before !== undefined && after !== undefined ? (after - before) / completed : undefined,
    ownCpuPerCall: (ownUsed.user + ownUsed.system) / completed,
  };
}

/**
 * `rounds` rounds over `keys`: each round runs every key once, in the order `order(round)` gives,
 * by default starting with key `round % n` and going on cyclically (so that no key always runs
 * first, or always right after the same other). Returns each key's results, one per round, in round order.
 */
export async function interleaved<K extends string>(
  keys: readonly K[],
  rounds: number,
  run: (key: K, round: number) => Promise<Measured>,
  order: (round: number) => readonly K[] = (round) => keys.map((_, j) => keys[(round + j) % keys.length]),
): Promise<Record<K, Measured[]>> {
  const results = Object.fromEntries(keys.map((k) => [k, [] as Measured[]])) as Record<K, Measured[]>;
  for (let round = 0; round < rounds; round++) for (const key of order(round)) results[key].push(await run(key, round));
  return results;
}

/** A series' median, quartiles and extremes. */
export interface Spread {
  median: number;
  q1: number;
  q3: number;
  min: number;
  max: number;
}

/** The {@link Spread} of `xs`. */
export function spread(xs: number[]): Spread {
  return { median: quantile(xs, 0.5), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75), min: Math.min(...xs), max: Math.max(...xs) };
}

/** `0.951 (IQR 0.930–0.962, min–max 0.902–0.981)`. */
export function formatSpread(s: Spread, digits = 3): string {
  const f = (x: number) => x.toFixed(digits);
  return `${f(s.median)} (IQR ${f(s.q1)}–${f(s.q3)}, min–max ${f(s.min)}–${f(s.max)})`;
}

/** Element-wise `a[i] / b[i]`. */
export const pairedRatios = (a: number[], b: number[]): number[] => a.map((x, i) => x / b[i]);

/** The per-round CPU per call of `results` (µs), or undefined when /proc gave none. */
export function cpuSeries(results: Measured[]): number[] | undefined {
  return results.every((r) => r.cpuPerCall !== undefined) ? results.map((r) => r.cpuPerCall!) : undefined;
}
