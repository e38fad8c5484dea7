// One of your branches called exactly as DTM calls it: over HTTP with DTM's query parameters, over
// gRPC with its dtm-* metadata; the answer read as DTM reads it.
import { GrpcCodecs, type GrpcProtos } from '../transport/grpc/grpc-codecs.js';
import { loadGrpc } from '../transport/grpc/grpc-runtime.js';
import { neverSent, peerAnswer } from '../transport/grpc/grpc.transport.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { readBranchAnswer } from '../transport/http/http-wire.js';
import { DtmUnavailableError } from '../errors/dtm-unavailable.error.js';
import { DtmServerError } from '../errors/dtm-server.error.js';
import { MESSAGES } from '../dtm.messages.js';
import { redactUrl } from '../redact.js';
import { messageOf } from '../errors/text-of.js';

/** The HTTP status that means each outcome, for a gRPC answer's `status`. */
const HTTP_STATUS_OF = { SUCCESS: 200, FAILURE: 409, ONGOING: 425, ERROR: 500 } as const;

/** What DTM tells a branch about the call: which transaction, which branch, which operation. */
export interface DtmBranchCall {
  /** The global transaction id. */
  gid: string;
  /** The operation: `action`, `compensate`, `try`, `confirm`, `cancel`, `commit`, `rollback` ... */
  op: string;
  /** `saga` (default), `tcc`, `msg`, `xa` or `workflow`. */
  transType?: string;
  /** The branch id DTM gives the branch (default `01`). */
  branchId?: string;
  /** The payload: JSON over HTTP; over gRPC an object encoded with your proto (`protos`), or the encoded bytes. Undefined: no body (a GET over HTTP, an empty message over gRPC). */
  body?: unknown;
  /** More request headers (HTTP) or metadata (gRPC), e.g. an authenticated call's signature. */
  headers?: Record<string, string>;
  /** The DTM server's URL DTM names in its calls (`dtm` query parameter), if any. */
  dtm?: string;
  /** HTTP method (default POST with a body, GET without). */
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Milliseconds before the call is abandoned (default 10 000). */
  timeoutMs?: number;
}

/** What DTM makes of a branch's answer. */
export type DtmBranchAnswerOutcome = 'SUCCESS' | 'FAILURE' | 'ONGOING' | 'ERROR';

/** A branch's answer to {@link callBranch} / {@link callGrpcBranch}. */
export interface DtmBranchAnswer {
  /** The HTTP status; over gRPC the HTTP status of the outcome DTM reads from the code (SUCCESS 200, FAILURE 409, ONGOING 425, ERROR 500). */
  status: number;
  /** In DTM's order: ONGOING (425, or a body saying ONGOING), FAILURE (409, or a body saying FAILURE), SUCCESS (200 only), else ERROR: DTM retries. */
  outcome: DtmBranchAnswerOutcome;
  /** The body (HTTP) or the gRPC status details / the reply's bytes as text. */
  text: string;
  /** The gRPC status code (gRPC only). */
  grpcCode?: number;
  /** The reply decoded with your proto (gRPC, when `protos` declare the method). */
  reply?: unknown;
}

/** The query parameters (HTTP) / `dtm-*` metadata keys (gRPC) DTM sends with a branch call. */
function dtmKeys(call: DtmBranchCall): Record<string, string> {
  if (typeof call !== 'object' || call === null) throw new DtmUsageError('callBranch needs { gid, op } (non-empty strings), as DTM always sends them');
  if (typeof call.gid !== 'string' || call.gid === '' || typeof call.op !== 'string' || call.op === '') {
    throw new DtmUsageError('callBranch needs { gid, op } (non-empty strings), as DTM always sends them');
  }
  const keys: Record<string, string> = { gid: call.gid, trans_type: call.transType ?? 'saga', branch_id: call.branchId ?? '01', op: call.op };
  if (call.dtm !== undefined) keys.dtm = call.dtm;
  return keys;
}

/**
 * Calls the HTTP branch at `url` (e.g. `http://127.0.0.1:3000/orders/withdraw`, or what
 * `DtmBranchRegistry.target()` returns) as DTM does: `gid`, `trans_type`, `branch_id`, `op` in the
 * query, the payload as a JSON body.
 */
export async function callBranch(url: string, call: DtmBranchCall): Promise<DtmBranchAnswer> {
  const keys = dtmKeys(call);
  if (typeof url !== 'string' || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    throw new DtmUsageError(`callBranch(url, call): url must be the branch's http(s) URL (DtmBranchRegistry.target(...) gives it), got ${JSON.stringify(url) ?? typeof url}`);
  }
  const target = new URL(url);
  for (const [key, value] of Object.entries(keys)) target.searchParams.set(key, value);
  const method = call.method ?? (call.body === undefined ? 'GET' : 'POST');
  let body: string | undefined;
  try {
    body = call.body === undefined ? undefined : JSON.stringify(call.body);
  } catch (err) {
    throw new DtmUsageError(MESSAGES.payloadNotSerializable(messageOf(err)));
  }
  let response: Response;
  let text: string;
  try {
    response = await fetch(target, {
      method,
      headers: { ...(call.body === undefined ? {} : { 'content-type': 'application/json' }), ...call.headers },
      body,
      signal: AbortSignal.timeout(call.timeoutMs ?? 10_000),
    });
    text = await response.text();
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? messageOf(err);
    throw new DtmUnavailableError(`callBranch: could not reach the branch ${redactUrl(url)} (${why}); check that the app listens there`, { endpoint: redactUrl(url), protocol: 'http', cause: err });
  }
  return { status: response.status, outcome: readBranchAnswer(response.status, text), text };
}

/**
 * Calls the gRPC branch `target` (`host:port/package.Service/Method`, as registered for DTM) as DTM
 * does: `dtm-gid`, `dtm-trans_type`, `dtm-branch_id`, `dtm-op` metadata, the payload encoded with
 * `protos` (the `grpcProtos` you give DtmModule) or given as bytes. Needs @grpc/grpc-js and
 * @grpc/proto-loader. An OK reply that does not decode with `protos` rejects with `DtmServerError`.
 */
export async function callGrpcBranch(target: string, call: DtmBranchCall, protos?: GrpcProtos): Promise<DtmBranchAnswer> {
  const slash = target.indexOf('/');
  if (slash <= 0) throw new DtmUsageError(`callGrpcBranch needs a target "host:port/package.Service/Method", got ${JSON.stringify(target)}`);
  const [server, path] = [target.slice(0, slash), target.slice(slash)];
  const codec = protos ? GrpcCodecs.load(protos).get(path) : undefined;
  let bytes: Buffer;
  if (call.body === undefined) bytes = Buffer.alloc(0);
  else if (call.body instanceof Uint8Array) bytes = Buffer.from(call.body);
  else if (codec && typeof call.body === 'object' && call.body !== null) bytes = codec.serializeRequest(call.body);
  else throw new DtmUsageError(`callGrpcBranch: to send an object to ${path}, pass the protos that declare it (the grpcProtos you give DtmModule), or pass the encoded bytes`);
  const { grpc } = loadGrpc();
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(dtmKeys(call))) metadata.set(`dtm-${key}`, value);
  // a `-bin` header as binary metadata, the bytes of its text, as DTM (grpc-go) sends it
  for (const [key, value] of Object.entries(call.headers ?? {})) metadata.set(key, key.endsWith('-bin') ? Buffer.from(value, 'utf8') : value);
  const client = new grpc.Client(server, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const identity = (b: Buffer): Buffer => b;
    client.makeUnaryRequest(path, identity, identity, bytes, metadata, { deadline: Date.now() + (call.timeoutMs ?? 10_000) }, (err, reply) => {
      client.close();
      // no connection (grpc-js's own UNAVAILABLE, no answer of the peer's; a deadline passed still waiting for one): nothing reached the branch
      if (err && ((err.code === grpc.status.UNAVAILABLE && peerAnswer(err) === undefined) || neverSent(err))) {
        const reason = err.details || err.message;
        return reject(new DtmUnavailableError(MESSAGES.testingGrpcBranchUnreachable(target, reason), { endpoint: target, protocol: 'grpc', cause: err }));
      }
      const code = err ? err.code : grpc.status.OK;
      // as DTM reads it: ABORTED is FAILURE (with the bare message ONGOING, the old ONGOING), FAILED_PRECONDITION ONGOING
      const outcome: DtmBranchAnswerOutcome =
        code === grpc.status.OK ? 'SUCCESS' : code === grpc.status.ABORTED ? (err?.details === 'ONGOING' ? 'ONGOING' : 'FAILURE') : code === grpc.status.FAILED_PRECONDITION ? 'ONGOING' : 'ERROR';
      const status = HTTP_STATUS_OF[outcome];
      const bytesBack = reply ?? Buffer.alloc(0);
      let decoded: { reply?: unknown } = {};
      // inside grpc-js's callback: a reply that does not decode must reject, not throw uncaught
      try {
        if (!err && codec) decoded = { reply: codec.deserializeResponse(bytesBack) };
      } catch (decodeError) {
        const reason = messageOf(decodeError);
        return reject(new DtmServerError(MESSAGES.branchReplyNotDecodable(target, bytesBack.length, reason), reason, { endpoint: target, protocol: 'grpc', status: 0, cause: decodeError }));
      }
      resolve({ status, outcome, grpcCode: code, text: err ? err.details : bytesBack.toString('utf8'), ...decoded });
    });
  });
}
