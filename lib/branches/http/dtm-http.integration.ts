import { AsyncResource } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { take } from 'rxjs';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { dtmContext, passThroughAllowList, pickHeaders } from '../../context/dtm-context.js';
import { DTM_CONFIG } from '../../dtm.constants.js';
import { DtmClient } from '../../client/dtm.client.js';
import { MESSAGES } from '../../dtm.messages.js';
import { messageOf } from '../../errors/text-of.js';
import { DtmBranchRegistry } from '../branch.registry.js';
import { parseAnswer } from '../../transport/payload.js';
import { AUTH_HEADER } from '../../auth/branch-auth.js';
import { answerResume, WORKFLOW_RESUME_PATH } from '../workflow-resume.js';
import { keepBranchQuery, keepRawBodyText, parseBranchQuery } from './http-branch.transport.js';
import { UNDO_OPS } from '../../transport/branch-keys.js';
import { MANIFEST_PATH } from '../../contracts/branch-manifest.js';

/** Largest branch body the parser reads (DTM payloads are small; larger bodies are answered unread, see `tooLargeAnswer`). */
export const MAX_BRANCH_BODY_BYTES = 1024 * 1024;

/** How much of a body over {@link MAX_BRANCH_BODY_BYTES} is still read, and dropped, after its answer (see {@link discardRest}). */
const MAX_DISCARDED_BODY_BYTES = 8 * MAX_BRANCH_BODY_BYTES;

/** How long the rest of such a body may take to arrive before its connection is cut (see {@link discardRest}). */
const DISCARD_TIMEOUT_MS = 10_000;

/** Content type a Fastify branch call is given so that only this module's parser reads it. */
const FASTIFY_BRANCH_CONTENT_TYPE = 'application/x-nestjs-dtm-branch';

/** The same for a Fastify branch call without `Content-Length` (sent chunked, by a proxy between DTM and the app): read by {@link readChunkedBranchBody}. */
const FASTIFY_CHUNKED_BRANCH_CONTENT_TYPE = 'application/x-nestjs-dtm-branch-chunked';

/** The body {@link readChunkedBranchBody} gives a Fastify branch call it stopped reading at the limit: the preHandler hook answers it as {@link tooLargeAnswer} says. */
const TOO_LARGE_BODY = Symbol('nestjs-dtm:branch-body-too-large');

/** Marks an HTTP adapter a DtmModule of the app installed its parsers and routes on. */
const INSTALLED = Symbol('nestjs-dtm:http-integration-installed');

/** Whether the first `pathLength` characters of `url` are the path of a decorated branch route for `method`. */
type BranchRoutes = (method: string, url: string, pathLength: number) => boolean;

/**
 * Whether `request` is a DTM branch call to a decorated branch route: its URL's path is the route's,
 * and its query carries `gid`, `trans_type` and `op`. Every other request (the app's own routes)
 * keeps the app's own body parsing and limits. `parsed`: the query as the server already parsed it
 * (Fastify); without it the query is read here, once, and kept on the request for the guard
 * (Express 5 would parse it again on every read of `req.query`).
 */
export function isBranchCall(request: { method?: string; url?: string }, routes: BranchRoutes, parsed?: Record<string, unknown>): boolean {
  const { method = '', url } = request;
  const q = url?.indexOf('?') ?? -1;
  if (q < 0 || !routes(method, url!, q)) return false;
  const keys = parsed ?? parseBranchQuery(url!.slice(q + 1));
  if (keys.gid === undefined || keys.trans_type === undefined || keys.op === undefined) return false;
  if (!parsed) keepBranchQuery(request, keys);
  return true;
}

/**
 * What the module adds to the HTTP adapter, installed when the adapter is set (before the app
 * registers its own parsers), so that it costs no Nest middleware, guard or interceptor:
 * - it opens the module's AsyncLocalStorage for a request that carries allow-listed headers
 *   (`pass_through_headers`, W3C trace context), so transactions started while serving it pass
 *   them on. Express: from the first middleware on; the request's stream events are bound to the
 *   context, so body parsers do not lose it. Fastify: a preHandler hook around the handler.
 * - it parses the bodies of DTM branch calls to decorated branch routes leniently (every other
 *   route keeps the app's own parsers and limits). DTM replays stored payloads verbatim with
 *   `Content-Type: application/json`; Express's strict JSON parser rejects `null` and strings (400,
 *   retried forever) and Fastify rejects empty bodies (XA phase 2). Express: read here, ahead of
 *   Nest's JSON parser, which then leaves the request alone; a body over
 *   {@link MAX_BRANCH_BODY_BYTES} is answered (FAILURE for an action or Try, see `tooLargeAnswer`)
 *   from its `Content-Length` before it is read, or, sent chunked, as soon as it passes the limit. Fastify: branch calls (whatever content type they
 *   name: on both adapters a branch call's body is read the one way its token signed it) get a
 *   content type of their own, read by this module's parser; one over the limit by its `Content-Length`
 *   is answered as on Express from the `onRequest` hook, one sent chunked once it passes the limit (from the `preHandler` hook).
 * - with `publish_branches`, it serves the branch manifest (GET {@link MANIFEST_PATH}), outside Nest's routing too.
 * - it serves the route DTM resumes workflows at (GET and POST {@link WORKFLOW_RESUME_PATH}),
 *   outside Nest's routing: DTM sends no credentials, so the app's guards must not see it.
 */
@Injectable()
export class DtmHttpIntegration {
  private readonly allowList: readonly string[];
  private readonly routes: BranchRoutes;

  constructor(
    @Inject(DTM_CONFIG) private readonly config: DtmConfig,
    @Optional() adapterHost?: HttpAdapterHost,
    @Optional() private readonly client?: DtmClient,
    @Optional() private readonly registry?: DtmBranchRegistry,
  ) {
    this.allowList = passThroughAllowList(config);
    this.routes = registry ? (method, url, pathLength) => registry.servesHttp(method, url, pathLength) : () => false;
    // init$ fires when the HTTP adapter is set: before the app registers its parsers
    adapterHost?.init$?.pipe(take(1)).subscribe(() => this.install(adapterHost.httpAdapter));
  }

  private install(adapter: HttpAdapterHost['httpAdapter'] | undefined): void {
    if (!adapter) return;
    // a second DtmModule of the app (refused at start-up by the explorer): Fastify would throw on the parser added again, uncaught
    const marked = adapter as { [INSTALLED]?: true };
    if (marked[INSTALLED]) return;
    marked[INSTALLED] = true;
    const type = adapter.getType();
    if (type === 'express') adapter.use(expressMiddleware(this.allowList, this.routes));
    if (type === 'fastify') installFastify(adapter.getInstance(), this.allowList, this.routes);
    if ((type === 'express' || type === 'fastify') && this.client) {
      const client = this.client;
      const resume = (req: { query?: Record<string, unknown>; headers?: Record<string, unknown> }, res: unknown) => {
        const auth = req.headers?.[AUTH_HEADER];
        const [name, gid] = [String(req.query?.op ?? ''), String(req.query?.gid ?? '')];
        void answerResume(client, name, gid, typeof auth === 'string' ? auth : undefined).then(({ status, body }) => {
          try {
            adapter.reply(res, body, status);
          } catch (err) {
            // Express throws when the response was sent already (a timeout middleware of the app's answered it): uncaught, it would end the process
            resumeLogger.warn(MESSAGES.workflowResumeAnswerLost(name, gid, status, messageOf(err)));
          }
        });
      };
      adapter.get(WORKFLOW_RESUME_PATH, resume);
      adapter.post(WORKFLOW_RESUME_PATH, resume);
    }
    const registry = this.registry;
    if ((type === 'express' || type === 'fastify') && registry && this.config.publishBranches) {
      adapter.get(MANIFEST_PATH, (_req: unknown, res: unknown) => adapter.reply(res, registry.manifest(), 200));
    }
  }
}

type NodeRequest = IncomingMessage & { body?: unknown; _body?: boolean; rawBody?: Buffer };

function expressMiddleware(allowList: readonly string[], routes: BranchRoutes) {
  return function dtmRequestContext(req: NodeRequest, res: ServerResponse, next: (err?: unknown) => void): void {
    const headers = pickHeaders(req.headers, allowList);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    if (hasBody && !req._body && isBranchCall(req, routes)) {
      readBranchBody(req, res, (err) => (err || !headers ? next(err) : dtmContext.run({ headers }, next)));
      return;
    }
    if (!headers) return next();
    dtmContext.run({ headers }, () => {
      // body parsers continue from the request's stream events, which would leave the context
      req.emit = AsyncResource.bind(req.emit);
      next();
    });
  };
}

/**
 * Reads a branch call's body, at most {@link MAX_BRANCH_BODY_BYTES}: a larger `Content-Length` is
 * answered (see {@link tooLargeAnswer}) before anything is read; a chunked body is answered as soon as
 * it passes the limit. Either way the rest of the body is dropped (see {@link discardRest}), `done` is
 * not called, and the handler does not run.
 */
function readBranchBody(req: NodeRequest, res: ServerResponse, done: (err?: unknown) => void): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BRANCH_BODY_BYTES) return refuseTooLarge(req, res);
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BRANCH_BODY_BYTES) return void chunks.push(chunk);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', done);
    chunks.length = 0;
    refuseTooLarge(req, res, size);
  };
  const onEnd = () => {
    // Node's HTTP parser gives each body chunk a Buffer of its own: a body of one chunk is kept as it came (no copy)
    req.rawBody = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    req.body = parseAnswer(req.rawBody.toString('utf8'));
    req._body = true; // body-parser's convention (v1); v2 sees the request finished: the app's parsers leave it alone
    done();
  };
  req.on('data', onData);
  req.on('error', done);
  req.on('end', onEnd);
}

/** Answers a branch call whose body is over the limit (see {@link tooLargeAnswer}), `read` bytes of it read, and drops the rest (see {@link discardRest}). */
function refuseTooLarge(req: NodeRequest, res: ServerResponse, read = 0): void {
  if (res.headersSent) return;
  const url = req.url ?? '';
  const [status, body] = tooLargeAnswer(parseBranchQuery(url.slice(url.indexOf('?') + 1)).op);
  warnTooLarge(url, status, read > 0 ? undefined : req.headers['content-length']);
  const kept = discardRest(req, req.socket, read, Number(req.headers['content-length']));
  res.writeHead(status, kept ? { 'content-type': 'application/json; charset=utf-8' } : { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
  res.end(JSON.stringify(body));
}

/**
 * Reads the rest of a branch call's body over the limit, answered early, and drops it. A server
 * closing a connection with unread data in it resets the connection: a client still writing the
 * body (DTM's Go client writes the whole of it) gets "write: broken pipe" instead of the answer and
 * calls again at its retry interval (10 s, then 20 s ...), so the FAILURE never reached DTM. At most
 * {@link MAX_DISCARDED_BODY_BYTES} in all (`read` of them already read) and for
 * {@link DISCARD_TIMEOUT_MS}: a sender going beyond is cut. A body that declares more is not read:
 * false, and its answer closes the connection.
 */
function discardRest(body: NodeJS.ReadableStream, socket: Socket | undefined, read: number, declared: number): boolean {
  if (!socket || declared > MAX_DISCARDED_BODY_BYTES) return false;
  // the connection is kept alive: nothing of this call stays on it once the body ended
  const settled = () => {
    clearTimeout(timer);
    socket.off('close', settled);
  };
  const cut = () => {
    settled();
    socket.destroy();
  };
  const timer = setTimeout(cut, DISCARD_TIMEOUT_MS).unref();
  body.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > MAX_DISCARDED_BODY_BYTES) cut();
  });
  body.on('error', settled); // the sender went away: nothing to answer
  body.on('end', settled);
  socket.once('close', settled);
  return true;
}

/** The logger of the workflow resume route's warnings. */
const resumeLogger = new Logger('DtmWorkflow');

/** The logger of the warnings of branch calls refused before Nest routed them (their body over the limit). */
const branchLogger = new Logger('DtmBranch');

/**
 * Warns of a branch call to `url` refused for its body's size, answered `status` (what DTM reads
 * it as): nothing of the app (guard, handler, hook, span, metric) sees such a call. `declared`: its
 * `Content-Length`; none for a body sent chunked and cut once it passed the limit. On that refusal only.
 */
function warnTooLarge(url: string, status: number, declared: string | undefined): void {
  const q = url.indexOf('?');
  const query = parseBranchQuery(q < 0 ? '' : url.slice(q + 1));
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  const size = declared !== undefined ? `${declared} bytes` : `more than ${MAX_BRANCH_BODY_BYTES} bytes (sent chunked)`;
  const call = { gid: text(query.gid), branchId: text(query.branch_id), op: text(query.op), transType: text(query.trans_type) };
  branchLogger.warn(MESSAGES.branchBodyTooLargeRefused(q < 0 ? url : url.slice(0, q), call, size, MAX_BRANCH_BODY_BYTES, status));
}

/**
 * The answer to a branch call of op `op` whose body is over {@link MAX_BRANCH_BODY_BYTES}, unread.
 * DTM sends a step's or branch's one payload to each of its ops and retries a 413 for ever, so a
 * saga holding such a step would stay unfinished: an action (saga, XA, workflow, and a message
 * branch, whose FAILURE DTM retries all the same) or TCC Try answers FAILURE (DTM rolls back, the
 * limit as reason); its compensation, Cancel or rollback answers success
 * without running the handler, since its action was refused the same way (as for a call whose
 * keys are refused); any other op 413.
 */
function tooLargeAnswer(op: unknown): [number, object] {
  const message = MESSAGES.branchBodyTooLarge(MAX_BRANCH_BODY_BYTES);
  if (op === 'action' || op === 'try') return [409, { dtm_result: 'FAILURE', message }];
  if (typeof op === 'string' && UNDO_OPS.has(op)) return [200, {}];
  return [413, { statusCode: 413, message }];
}

interface FastifyRequestLike {
  method: string;
  url: string;
  query?: unknown;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
  raw?: IncomingMessage;
}

interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  send(body: string): unknown;
}

interface FastifyLike {
  addHook(name: 'onRequest' | 'preHandler', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: () => void) => void): void;
  addContentTypeParser(
    type: string,
    options: { parseAs: 'string'; bodyLimit: number },
    parser: (request: object, body: string, done: (err: Error | null, body?: unknown) => void) => void,
  ): void;
  addContentTypeParser(type: string, parser: (request: object, payload: NodeJS.ReadableStream, done: (err: Error | null, body?: unknown) => void) => void): void;
}

/**
 * Fastify's parser of a branch call sent chunked (no `Content-Length`: DTM always sends one, a
 * proxy may re-chunk it): reads at most {@link MAX_BRANCH_BODY_BYTES}, and once the body passes
 * that, drops the rest (see {@link discardRest}) and gives {@link TOO_LARGE_BODY}, which the preHandler hook answers as a
 * `Content-Length` over the limit is answered (Fastify's own `bodyLimit` would answer 413, which
 * DTM retries for ever).
 */
function readChunkedBranchBody(request: object, payload: NodeJS.ReadableStream, done: (err: Error | null, body?: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BRANCH_BODY_BYTES) return void chunks.push(chunk);
    payload.off('data', onData);
    payload.off('end', onEnd);
    payload.off('error', done);
    chunks.length = 0;
    // a body sent chunked declares no length: its rest is always read, up to the bound
    if (!discardRest(payload, (request as FastifyRequestLike).raw?.socket, size, Number.NaN)) payload.on('error', () => undefined);
    done(null, TOO_LARGE_BODY);
  };
  const onEnd = () => {
    const text = Buffer.concat(chunks).toString('utf8');
    keepRawBodyText(request, text);
    done(null, parseAnswer(text));
  };
  payload.on('data', onData);
  payload.on('error', done);
  payload.on('end', onEnd);
}

function installFastify(fastify: FastifyLike, allowList: readonly string[], routes: BranchRoutes): void {
  // the handler runs inside done(): the context covers it and everything it starts
  fastify.addHook('preHandler', (request, reply, done) => {
    // a branch call sent chunked whose body passed the limit: answered as one over the limit by its Content-Length, its rest dropped by readChunkedBranchBody
    if (request.body === TOO_LARGE_BODY) {
      const [status, body] = tooLargeAnswer((request.query as Record<string, unknown> | undefined)?.op);
      warnTooLarge(request.url, status, undefined);
      reply.code(status).header('content-type', 'application/json; charset=utf-8');
      if (!request.raw?.socket) reply.header('connection', 'close');
      reply.send(JSON.stringify(body));
      return;
    }
    const headers = pickHeaders(request.headers, allowList);
    if (headers) dtmContext.run({ headers }, done);
    else done();
  });
  fastify.addHook('onRequest', (request, reply, done) => {
    // whatever content type a branch call names (DTM sends JSON): the same bytes are read one way, the way its token signed them
    const type = request.headers['content-type'];
    if (typeof type === 'string' && isBranchCall(request, routes, (request.query ?? {}) as Record<string, unknown>)) {
      const declared = request.headers['content-length'];
      request.headers['content-type'] = declared === undefined ? FASTIFY_CHUNKED_BRANCH_CONTENT_TYPE : FASTIFY_BRANCH_CONTENT_TYPE;
      // over the limit by its Content-Length (what DTM sends): answered as on Express, its rest dropped; a chunked one is cut by readChunkedBranchBody
      if (Number(declared) > MAX_BRANCH_BODY_BYTES) {
        const [status, body] = tooLargeAnswer((request.query as Record<string, unknown> | undefined)?.op);
        warnTooLarge(request.url, status, typeof declared === 'string' ? declared : undefined);
        reply.code(status).header('content-type', 'application/json; charset=utf-8');
        if (!request.raw || !discardRest(request.raw, request.raw.socket, 0, Number(declared))) reply.header('connection', 'close');
        reply.send(JSON.stringify(body));
        return;
      }
    }
    done();
  });
  fastify.addContentTypeParser(FASTIFY_BRANCH_CONTENT_TYPE, { parseAs: 'string', bodyLimit: MAX_BRANCH_BODY_BYTES }, (request, body, done) => {
    keepRawBodyText(request, body);
    done(null, parseAnswer(body));
  });
  fastify.addContentTypeParser(FASTIFY_CHUNKED_BRANCH_CONTENT_TYPE, readChunkedBranchBody);
}
