import type { IncomingMessage, ServerResponse } from 'node:http';
import { Injectable, Optional } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { take } from 'rxjs';

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
 * A branch body as DTM replays it, parsed leniently: empty → undefined; any JSON value (objects,
 * arrays, the `null` Go services send, strings, numbers) → that value; anything else → the text.
 */
export function parseBranchBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Installs, before the app's own body parser, a parser for DTM branch calls only: DTM replays stored
 * payloads verbatim with `Content-Type: application/json`, and Express's strict JSON parser rejects
 * `null` and strings (400, retried forever), Fastify rejects empty bodies (XA phase 2). Express: a
 * middleware ahead of Nest's JSON parser (which then skips the request). Fastify: branch calls get a
 * content type of their own, read by this module's parser.
 */
@Injectable()
export class DtmBranchBodyParser {
  constructor(@Optional() adapterHost?: HttpAdapterHost) {
    // init$ fires when the HTTP adapter is set: before the app registers its parsers
    adapterHost?.init$?.pipe(take(1)).subscribe(() => this.install(adapterHost.httpAdapter));
  }

  private install(adapter: HttpAdapterHost['httpAdapter'] | undefined): void {
    if (!adapter) return;
    const type = adapter.getType();
    if (type === 'express') adapter.use(dtmBranchBodyParser);
    if (type === 'fastify') installFastify(adapter.getInstance());
  }
}

type NodeRequest = IncomingMessage & { body?: unknown; _body?: boolean; rawBody?: Buffer };

/** Express middleware (named like body-parser's, so it shows what it is in the stack). */
function dtmBranchBodyParser(req: NodeRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
  if (req._body || req.method === 'GET' || req.method === 'HEAD' || !isBranchCall(req.url)) return next();
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BRANCH_BODY_BYTES) chunks.push(chunk);
  });
  req.on('error', next);
  req.on('end', () => {
    if (size > MAX_BRANCH_BODY_BYTES) return next(Object.assign(new Error(`branch body larger than ${MAX_BRANCH_BODY_BYTES} bytes`), { status: 413 }));
    req.rawBody = Buffer.concat(chunks);
    req.body = parseBranchBody(req.rawBody.toString('utf8'));
    req._body = true; // body-parser convention: the app's own parsers leave the request alone
    next();
  });
}

interface FastifyLike {
  addHook(name: 'onRequest', hook: (request: { url: string; headers: Record<string, unknown> }, reply: unknown, done: () => void) => void): void;
  addContentTypeParser(
    type: string,
    options: { parseAs: 'string'; bodyLimit: number },
    parser: (request: { rawBody?: Buffer }, body: string, done: (err: Error | null, body?: unknown) => void) => void,
  ): void;
}

function installFastify(fastify: FastifyLike): void {
  fastify.addHook('onRequest', (request, _reply, done) => {
    const type = request.headers['content-type'];
    if (typeof type === 'string' && type.startsWith('application/json') && isBranchCall(request.url)) {
      request.headers['content-type'] = FASTIFY_BRANCH_CONTENT_TYPE;
    }
    done();
  });
  fastify.addContentTypeParser(FASTIFY_BRANCH_CONTENT_TYPE, { parseAs: 'string', bodyLimit: MAX_BRANCH_BODY_BYTES }, (request, body, done) => {
    request.rawBody = Buffer.from(body, 'utf8');
    done(null, parseBranchBody(body));
  });
}
