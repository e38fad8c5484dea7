import { AsyncResource } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { take } from 'rxjs';
import type { DtmConfig } from '../../config/dtm-config.types.js';
import { dtmContext, passThroughAllowList, pickHeaders } from '../../context/dtm-context.js';
import { DTM_CONFIG } from '../../dtm.constants.js';
import { DtmClient } from '../../client/dtm.client.js';
import { parseAnswer } from '../../transport/payload.js';
import { AUTH_HEADER } from '../../auth/branch-auth.js';
import { answerResume, WORKFLOW_RESUME_PATH } from '../workflow-resume.js';

/** Largest branch body the parser reads (DTM payloads are small; larger bodies get 413). */
export const MAX_BRANCH_BODY_BYTES = 1024 * 1024;

/** Content type a Fastify branch call is given so that only this module's parser reads it. */
const FASTIFY_BRANCH_CONTENT_TYPE = 'application/x-nestjs-dtm-branch';

/** Whether the request URL carries the query of a DTM branch call (`gid`, `trans_type`, `op`). */
export function isBranchCall(url: string | undefined): boolean {
  const q = url?.indexOf('?') ?? -1;
  if (q < 0) return false;
  const query = new URLSearchParams(url!.slice(q + 1));
  return query.has('gid') && query.has('trans_type') && query.has('op');
}

/**
 * What the module adds to the HTTP adapter, installed when the adapter is set (before the app
 * registers its own parsers), so that it costs no Nest middleware, guard or interceptor:
 * - it opens the module's AsyncLocalStorage for a request that carries allow-listed headers
 *   (`pass_through_headers`, W3C trace context), so transactions started while serving it pass
 *   them on. Express: from the first middleware on; the request's stream events are bound to the
 *   context, so body parsers do not lose it. Fastify: a preHandler hook around the handler.
 * - it parses the bodies of DTM branch calls leniently. DTM replays stored payloads verbatim with
 *   `Content-Type: application/json`; Express's strict JSON parser rejects `null` and strings (400,
 *   retried forever) and Fastify rejects empty bodies (XA phase 2). Express: read here, ahead of
 *   Nest's JSON parser, which then leaves the request alone. Fastify: branch calls get a content
 *   type of their own, read by this module's parser.
 * - it serves the route DTM resumes workflows at (GET and POST {@link WORKFLOW_RESUME_PATH}),
 *   outside Nest's routing: DTM sends no credentials, so the app's guards must not see it.
 */
@Injectable()
export class DtmHttpIntegration {
  private readonly allowList: readonly string[];

  constructor(
    @Inject(DTM_CONFIG) config: DtmConfig,
    @Optional() adapterHost?: HttpAdapterHost,
    @Optional() private readonly client?: DtmClient,
  ) {
    this.allowList = passThroughAllowList(config);
    // init$ fires when the HTTP adapter is set: before the app registers its parsers
    adapterHost?.init$?.pipe(take(1)).subscribe(() => this.install(adapterHost.httpAdapter));
  }

  private install(adapter: HttpAdapterHost['httpAdapter'] | undefined): void {
    if (!adapter) return;
    const type = adapter.getType();
    if (type === 'express') adapter.use(expressMiddleware(this.allowList));
    if (type === 'fastify') installFastify(adapter.getInstance(), this.allowList);
    if ((type === 'express' || type === 'fastify') && this.client) {
      const client = this.client;
      const resume = (req: { query?: Record<string, unknown>; headers?: Record<string, unknown> }, res: unknown) => {
        const auth = req.headers?.[AUTH_HEADER];
        void answerResume(client, String(req.query?.op ?? ''), String(req.query?.gid ?? ''), typeof auth === 'string' ? auth : undefined).then(({ status, body }) => adapter.reply(res, body, status));
      };
      adapter.get(WORKFLOW_RESUME_PATH, resume);
      adapter.post(WORKFLOW_RESUME_PATH, resume);
    }
  }
}

type NodeRequest = IncomingMessage & { body?: unknown; _body?: boolean; rawBody?: Buffer };

function expressMiddleware(allowList: readonly string[]) {
  return function dtmRequestContext(req: NodeRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
    const headers = pickHeaders(req.headers, allowList);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    if (hasBody && !req._body && isBranchCall(req.url)) {
      readBranchBody(req, (err) => (err || !headers ? next(err) : dtmContext.run({ headers }, next)));
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

function readBranchBody(req: NodeRequest, done: (err?: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BRANCH_BODY_BYTES) chunks.push(chunk);
  });
  req.on('error', done);
  req.on('end', () => {
    if (size > MAX_BRANCH_BODY_BYTES) return done(Object.assign(new Error(`branch body larger than ${MAX_BRANCH_BODY_BYTES} bytes`), { status: 413 }));
    req.rawBody = Buffer.concat(chunks);
    req.body = parseAnswer(req.rawBody.toString('utf8'));
    req._body = true; // body-parser's convention (v1); v2 sees the request finished: the app's parsers leave it alone
    done();
  });
}

interface FastifyRequestLike {
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

interface FastifyLike {
  addHook(name: 'onRequest' | 'preHandler', hook: (request: FastifyRequestLike, reply: unknown, done: () => void) => void): void;
  addContentTypeParser(
    type: string,
    options: { parseAs: 'string'; bodyLimit: number },
    parser: (request: { rawBody?: Buffer }, body: string, done: (err: Error | null, body?: unknown) => void) => void,
  ): void;
}

function installFastify(fastify: FastifyLike, allowList: readonly string[]): void {
  // the handler runs inside done(): the context covers it and everything it starts
  fastify.addHook('preHandler', (request, _reply, done) => {
    const headers = pickHeaders(request.headers, allowList);
    if (headers) dtmContext.run({ headers }, done);
    else done();
  });
  fastify.addHook('onRequest', (request, _reply, done) => {
    const type = request.headers['content-type'];
    if (typeof type === 'string' && type.startsWith('application/json') && isBranchCall(request.url)) {
      request.headers['content-type'] = FASTIFY_BRANCH_CONTENT_TYPE;
    }
    done();
  });
  fastify.addContentTypeParser(FASTIFY_BRANCH_CONTENT_TYPE, { parseAs: 'string', bodyLimit: MAX_BRANCH_BODY_BYTES }, (request, body, done) => {
    request.rawBody = Buffer.from(body, 'utf8');
    done(null, parseAnswer(body));
  });
}
