// Probes of a branch target, made only when a transaction did not finish in time, and only of
// targets this process put into the transaction. They never run a branch's business logic:
//  - `connect`: a DNS lookup and a TCP connection, closed at once; not one byte is sent;
//  - `grpc`: for a gRPC target, the same connection with the HTTP/2 client preface and an empty
//    SETTINGS frame (what any gRPC client sends first; no stream, so no method is called): an
//    HTTP/1 server answers it with an HTTP/1 status line, which says the target is no gRPC server;
//  - `http`: only for this app's own decorated routes: one request with the method DTM uses, no
//    query and no body. The route's DtmBranchGuard refuses it (400: no gid, trans_type, branch_id,
//    op) before any interceptor, pipe or handler, and before the branch-call authentication (so a
//    signed-call setup sees no bad signature). What answers first (a global guard's 403, a 404 of a
//    route that does not serve the method) is the diagnosis.
import http from 'node:http';
import https from 'node:https';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { messageOf } from '../errors/text-of.js';

/** What a probe found. */
export type ProbeResult =
  | { kind: 'dns'; host: string; code: string }
  | { kind: 'refused'; address: string }
  | { kind: 'timeout'; address: string; ms: number }
  | { kind: 'unreachable'; address: string; code: string }
  | { kind: 'connected'; address: string }
  | { kind: 'not-grpc'; address: string }
  | { kind: 'answered'; status: number; body: string };

/** Most bytes of an answer a probe reads. */
const MAX_PROBE_BODY = 2048;

/** `host` and `port` of an http(s) URL or a gRPC `host:port/...` target. */
export function hostPortOf(target: string): { host: string; port: number } | undefined {
  if (/^https?:\/\//i.test(target)) {
    try {
      const url = new URL(target);
      return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) };
    } catch {
      return undefined;
    }
  }
  const grpc = /^(\[[^\]]+\]|[^:/\s]+):(\d{1,5})\//.exec(target);
  return grpc ? { host: grpc[1].replace(/^\[|\]$/g, ''), port: Number(grpc[2]) } : undefined;
}

/** A DNS lookup of `host`, then a TCP connection to it that is closed as soon as it opens (nothing is sent); both within `timeoutMs`. */
export async function probeConnect(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return (await reach(host, port, Date.now() + timeoutMs, timeoutMs)).result;
}

/** The HTTP/2 client connection preface and an empty SETTINGS frame: what a gRPC client sends first. */
const HTTP2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/**
 * {@link probeConnect} of a gRPC target, then the HTTP/2 preface on that connection (see the file's
 * comment): `not-grpc` when the answer is an HTTP/1 status line; else what the connection gave.
 */
export async function probeGrpc(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  const { result, ip } = await reach(host, port, deadline, timeoutMs);
  if (result.kind !== 'connected' || !ip) return result;
  const left = deadline - Date.now();
  if (left <= 0) return result;
  return new Promise((resolve) => {
    const socket = net.connect({ host: ip, port });
    const done = (found: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(found);
    };
    const timer = setTimeout(() => done(result), left);
    socket.once('connect', () => socket.write(HTTP2_PREFACE));
    socket.once('data', (chunk: Buffer) => done(chunk.subarray(0, 5).toString('latin1') === 'HTTP/' ? { kind: 'not-grpc', address: result.address } : result));
    socket.once('error', () => done(result));
    socket.once('end', () => done(result));
  });
}

/**
 * {@link probeConnect} by `deadline` (a timeout result says `timeoutMs`, the probe's whole bound);
 * with the address the lookup gave when it connected.
 */
async function reach(host: string, port: number, deadline: number, timeoutMs: number): Promise<{ result: ProbeResult; ip?: string }> {
  const address = `${host}:${port}`;
  const timedOut: ProbeResult = { kind: 'timeout', address, ms: timeoutMs };
  let ip: string;
  try {
    ip = net.isIP(host) ? host : (await withTimeout(lookup(host), deadline - Date.now())).address;
  } catch (err) {
    const code = codeOf(err);
    return { result: code === 'ETIMEDOUT' ? timedOut : { kind: 'dns', host, code } };
  }
  const left = deadline - Date.now();
  if (left <= 0) return { result: timedOut };
  return new Promise((resolve) => {
    const socket = net.connect({ host: ip, port });
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ result, ip });
    };
    const timer = setTimeout(() => done(timedOut), left);
    socket.once('connect', () => done({ kind: 'connected', address }));
    socket.once('error', (err) => done(codeOf(err) === 'ECONNREFUSED' ? { kind: 'refused', address } : { kind: 'unreachable', address, code: codeOf(err) }));
  });
}

/**
 * One keyless request to one of this app's own branch routes (see the file's comment): `method`
 * (what DTM uses for the branch), the URL's path without a query, no body, no redirects followed,
 * no proxy; the answer's status and its first {@link MAX_PROBE_BODY} bytes. The DNS lookup, the
 * connection and the request take `timeoutMs` in all; the request goes to the address the lookup
 * gave (the host name still its `Host` and TLS server name), not to a second lookup's.
 */
export async function probeOwnRoute(url: string, method: 'GET' | 'POST', timeoutMs: number): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  const target = new URL(url);
  const where = hostPortOf(url)!;
  const { result: connect, ip } = await reach(where.host, where.port, deadline, timeoutMs);
  if (connect.kind !== 'connected') return connect;
  const timedOut: ProbeResult = { kind: 'timeout', address: connect.address, ms: timeoutMs };
  const left = deadline - Date.now();
  if (left <= 0) return timedOut;
  const family = net.isIP(ip!);
  const resolved: net.LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (err: null, addresses: { address: string; family: number }[]) => void)(null, [{ address: ip!, family }]);
    else callback(null, ip!, family);
  };
  return new Promise((resolve) => {
    const client = target.protocol === 'https:' ? https : http;
    const req = client.request(
      {
        method,
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        path: target.pathname,
        headers: { 'content-length': '0', 'user-agent': 'nestjs-dtm-diagnosis' },
        agent: false,
        lookup: resolved,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < MAX_PROBE_BODY) body += chunk;
          else res.destroy();
        });
        const end = () => done({ kind: 'answered', status: res.statusCode ?? 0, body: body.slice(0, MAX_PROBE_BODY) });
        res.once('end', end);
        res.once('close', end);
      },
    );
    let settled = false;
    const done = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(timedOut), left);
    req.once('error', (err) => done(codeOf(err) === 'ECONNREFUSED' ? { kind: 'refused', address: connect.address } : { kind: 'unreachable', address: connect.address, code: codeOf(err) }));
    req.end();
  });
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : messageOf(err);
}

/**
 * `promise`, or `timedOut()`'s error once `ms` passed without its outcome (default: an `ETIMEDOUT`
 * error). `late` gets what `promise` gives after that (a connection to close).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, timedOut: () => Error = () => Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }), late?: (value: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let over = false;
  if (late) void promise.then((value) => over && late(value), () => undefined);
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        over = true;
        reject(timedOut());
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
