import { HttpException, type ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { DtmFailureError } from '../../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../../errors/dtm-ongoing.error.js';
import type { BranchCarrier, BranchTransport } from '../branch-transport.js';
import { type BranchInfo } from '../../transport/dtm.types.js';
import { REQUIRED_BRANCH_QUERY } from '../branch.types.js';
import { formDecode, signedQuery } from '../../auth/branch-auth.js';
import { dtmResultOfRpcException, rpcExceptionDetails } from '../grpc/grpc-branch.transport.js';
import { truncate } from '../../dtm.messages.js';
import { ANSWERED_TEXT_MAX } from '../../transport/dtm-limits.js';

type Query = Record<string, unknown>;
/** DTM's keys of a branch call, read from the request once (Express 5 parses the whole query string on every read of `req.query`). */
const BRANCH_QUERY = Symbol('nestjs-dtm:branch-query');
type Request = {
  query?: Query;
  headers?: Record<string, string | string[] | undefined>;
  originalUrl?: string;
  url?: string;
  rawBody?: unknown;
  body?: unknown;
  [BRANCH_QUERY]?: Query;
};

/** The query keys of DTM's branch protocol. */
const DTM_QUERY_KEYS: ReadonlySet<string> = new Set(['gid', 'trans_type', 'branch_id', 'op', 'dtm', 'phase2_url']);

/**
 * DTM's keys in a query string (without the `?`), decoded as a form (`+` is a space): a key given
 * twice reads as a list, as Node's and Express's parsers read it (and is then refused as missing).
 * Other keys are not read.
 */
export function parseBranchQuery(query: string): Query {
  // every key of DTM's present from the start, unset: one shape for every call (an object without a
  // prototype is a dictionary, which cost each call about 400 B and a quarter of a microsecond)
  const keys: Query = { gid: undefined, trans_type: undefined, branch_id: undefined, op: undefined, dtm: undefined, phase2_url: undefined };
  for (let start = 0; start < query.length; ) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    let eq = query.indexOf('=', start);
    if (eq < 0 || eq > end) eq = end;
    const key = formDecode(query.slice(start, eq));
    if (DTM_QUERY_KEYS.has(key)) {
      const value = eq < end ? formDecode(query.slice(eq + 1, end)) : '';
      const seen = keys[key];
      keys[key] = seen === undefined ? value : ([] as unknown[]).concat(seen, value);
    }
    start = end + 1;
  }
  return keys;
}

/** The body text of a Fastify branch call as the module's parser read it (kept as it came: no Buffer made of it per call). */
const RAW_BODY_TEXT = Symbol('nestjs-dtm:raw-body-text');

/** Keeps the body text of a branch call that the module's Fastify parser read. */
export function keepRawBodyText(request: object, text: string): void {
  (request as { [RAW_BODY_TEXT]?: string })[RAW_BODY_TEXT] = text;
}

/** Keeps DTM's keys of a request already read from its URL (by the module's Express middleware). */
export function keepBranchQuery(request: object, keys: Query): void {
  (request as Request)[BRANCH_QUERY] = keys;
}

/** DTM's keys of the branch call `carrier`: kept by the middleware, else read from the request's parsed query, once. */
function queryOf(carrier: BranchCarrier): Query {
  const request = carrier as Request;
  return (request[BRANCH_QUERY] ??= request.query ?? {});
}

/** Whether a branch call's query lacks `key`: `gid`, `trans_type` and `op` must be non-empty strings, `branch_id` a string. */
function lacks(query: Query, key: (typeof REQUIRED_BRANCH_QUERY)[number]): boolean {
  const value = query[key];
  return typeof value !== 'string' || (value === '' && key !== 'branch_id');
}

/** DTM's branch protocol over HTTP: the call in the query string (`gid, trans_type, branch_id, op, dtm, phase2_url`), the outcome as a status. */
export const httpBranchTransport: BranchTransport = {
  protocol: 'http',

  carrier(context: ArgumentsHost): BranchCarrier {
    return context.getArgByIndex<object>(0); // the request, as switchToHttp().getRequest() gives it
  },

  completeOp(carrier: BranchCarrier): string | undefined {
    const query = queryOf(carrier);
    return lacks(query, 'gid') || lacks(query, 'trans_type') || lacks(query, 'branch_id') || lacks(query, 'op') ? undefined : (query.op as string);
  },

  transType(carrier: BranchCarrier): string {
    return String(queryOf(carrier).trans_type ?? '');
  },

  gid(carrier: BranchCarrier): string {
    return String(queryOf(carrier).gid ?? '');
  },

  branchId(carrier: BranchCarrier): string {
    return String(queryOf(carrier).branch_id ?? '');
  },

  missing(carrier: BranchCarrier): string[] {
    const query = queryOf(carrier);
    return REQUIRED_BRANCH_QUERY.filter((key) => lacks(query, key));
  },

  branchInfo(carrier: BranchCarrier, headers: Record<string, string>): BranchInfo | undefined {
    const query = queryOf(carrier);
    if (!this.completeOp(carrier)) return undefined;
    const get = (key: string) => (typeof query[key] === 'string' ? (query[key] as string) : '');
    return { gid: get('gid'), transType: get('trans_type'), branchId: get('branch_id'), op: get('op'), dtm: get('dtm') || undefined, phase2Url: get('phase2_url') || undefined, headers };
  },

  header(carrier: BranchCarrier, name: string): string | undefined {
    const value = (carrier as Request).headers?.[name];
    return typeof value === 'string' ? value : undefined;
  },

  /** The URL's path, and its query but DTM's keys as a token signs it ({@link signedQuery}): only authenticated calls ask. */
  path(carrier: BranchCarrier): string {
    const url = (carrier as Request).originalUrl ?? (carrier as Request).url ?? '';
    const q = url.indexOf('?');
    return q < 0 ? url : url.slice(0, q) + signedQuery(url.slice(q + 1));
  },

  payload(_context: ArgumentsHost, carrier: BranchCarrier): unknown {
    return (carrier as Request).body;
  },

  /** The raw body the module's reader kept (Express: bytes, Fastify: text); else (another parser read it) the parsed body re-encoded as JSON. */
  rawBody(_context: ArgumentsHost, carrier: BranchCarrier): string | Uint8Array {
    const { rawBody, body, [RAW_BODY_TEXT]: text } = carrier as Request & { [RAW_BODY_TEXT]?: string };
    if (text !== undefined) return text;
    if (Buffer.isBuffer(rawBody)) return rawBody;
    if (body === undefined || body === null || body === '') return '';
    if (typeof body === 'string' || Buffer.isBuffer(body)) return body;
    if (typeof body === 'object' && Object.keys(body).length === 0) return ''; // no body: parsers leave {}
    return JSON.stringify(body);
  },

  /**
   * `DtmFailureError` → 409 with a body DTM reads as FAILURE (the reason in it), `DtmOngoingError` →
   * 425 (ONGOING), an HttpException → its own status and body (cut past {@link ANSWERED_TEXT_MAX}, as
   * an ONGOING's or RpcException's message is, see {@link answeredResponse}), an RpcException that DTM reads over
   * gRPC as FAILURE or ONGOING (code ABORTED / FAILED_PRECONDITION: a handler that is a route and a
   * `@GrpcMethod`) → 409 / 425 as those errors, its details (else message) as the reason, anything
   * else → 500 with a generic body (DTM retries with backoff; the error's text is not sent, because
   * DTM would read a FAILURE or ONGOING in it as that result). DTM reads an HttpException's answer
   * by its status alone: a 409's body never holds the word ONGOING, another status's (but 425's)
   * neither FAILURE nor ONGOING ({@link escapedText}).
   */
  failureText(reason: string): string {
    const body = failureBody(reason);
    return escapedText(body, ONGOING) ?? JSON.stringify(body);
  },

  failureException(reason: string): Error {
    // Nest's BaseExceptionFilter answers an HttpException with an object response: that status, the object as JSON
    return new HttpException(failureBody(reason), 409, { cause: new DtmFailureError(reason) });
  },

  answeredText(exception: unknown): string {
    const [status, body] = answerOf(exception);
    return escapedAnswer(status, body) ?? (typeof body === 'string' ? body : (JSON.stringify(body) ?? ''));
  },

  answer(exception: unknown, host: ArgumentsHost, adapterHost: HttpAdapterHost | undefined): unknown {
    const [status, body] = answerOf(exception);
    const response = host.switchToHttp().getResponse();
    const adapter = adapterHost!.httpAdapter;
    const text = escapedAnswer(status, body);
    if (text === undefined) {
      adapter.reply(response, body, status);
    } else {
      adapter.setHeader(response, 'Content-Type', 'application/json; charset=utf-8');
      adapter.reply(response, text, status);
    }
    return undefined;
  },
};

const ONGOING: readonly string[] = ['ONGOING'];

/** The status and body `exception` is answered with (see `answer`). */
function answerOf(exception: unknown): [number, unknown] {
  const rpc = dtmResultOfRpcException(exception);
  if (exception instanceof DtmFailureError) return [409, failureBody(exception.reason)];
  if (exception instanceof DtmOngoingError) return [425, { dtm_result: 'ONGOING', message: truncate(exception.message, ANSWERED_TEXT_MAX) }];
  if (exception instanceof HttpException) return [exception.getStatus(), answeredResponse(exception)];
  if (rpc !== undefined) return [rpc === 'FAILURE' ? 409 : 425, { dtm_result: rpc, message: truncate(rpcExceptionDetails(exception) ?? rpc, ANSWERED_TEXT_MAX) }];
  return [500, { statusCode: 500, message: 'Internal server error' }];
}

/** The answer's body as JSON text with the words DTM would misread escapes ({@link escapedText}), or undefined when it goes as it is. */
function escapedAnswer(status: number, body: unknown): string | undefined {
  return status === 425 ? undefined : escapedText(body, status === 409 ? ONGOING : RESULT_WORDS);
}

/**
 * The body an HttpException is answered with: its response, unless its text passes
 * {@link ANSWERED_TEXT_MAX} (DTM's log lines, a saga's rollback reason, a caller's max_answer_bytes):
 * then a string cut (`truncate`), an object's string `message` cut, and an object still longer than
 * twice that (other fields) replaced by `{ statusCode, message }`, the message cut.
 */
function answeredResponse(exception: HttpException): unknown {
  const response = exception.getResponse();
  if (typeof response === 'string') return truncate(response, ANSWERED_TEXT_MAX);
  if (typeof response !== 'object' || response === null) return response;
  const text = JSON.stringify(response);
  if (text === undefined || text.length <= ANSWERED_TEXT_MAX) return response;
  const message = (response as { message?: unknown }).message;
  if (typeof message === 'string') {
    const cut = { ...response, message: truncate(message, ANSWERED_TEXT_MAX) };
    if (JSON.stringify(cut).length <= 2 * ANSWERED_TEXT_MAX) return cut;
  }
  return { statusCode: exception.getStatus(), message: truncate(exception.message, ANSWERED_TEXT_MAX) };
}

/** The body of a 409 FAILURE answer with `reason`. */
function failureBody(reason: string): { dtm_result: 'FAILURE'; message: string } {
  return { dtm_result: 'FAILURE', message: reason };
}
const RESULT_WORDS: readonly string[] = ['FAILURE', 'ONGOING'];

/**
 * An error answer's body as JSON text in which DTM cannot find the `words` it would read as a result
 * (it reads FAILURE and ONGOING anywhere in a body, ONGOING first: a 409's reason holding ONGOING, a
 * gid say, kept the branch pending forever; a 503 whose message said FAILURE rolled a saga back):
 * each is written with its first letter escaped (`\u0046`, `\u004f`), which every JSON reader
 * decodes back; JSON puts letters only inside strings. Undefined (the body goes as it is) when there
 * is none.
 */
export function escapedText(body: unknown, words: readonly string[]): string | undefined {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  if (text === undefined || !words.some((word) => text.includes(word))) return undefined;
  let json = JSON.stringify(body);
  for (const word of words) json = json.replaceAll(word, `\\u00${word.charCodeAt(0).toString(16)}${word.slice(1)}`);
  return json;
}
