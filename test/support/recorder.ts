import 'reflect-metadata';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Metadata, Server, status as grpcStatus, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { All, Controller, Inject, Module, Req, Res, type DynamicModule, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { bindGrpcServer } from './grpc.js';
import { sleep } from './services/process.js';
import { keepConnectionsForDtm } from './dtm-keep-alive.js';

/** One request a recorder endpoint received, over HTTP or gRPC. */
export interface RecordedCall {
  /** The HTTP method, or `GRPC`. */
  method: string;
  path: string;
  /** The HTTP query; for gRPC, DTM's `dtm-*` metadata without the prefix (`gid`, `trans_type`, `branch_id`, `op`, `dtm`, `phase2_url`). */
  query: Record<string, string>;
  /** Header names in lower case; for gRPC, the other metadata (and `content-type`). */
  headers: Record<string, string>;
  /** The body exactly as received, as UTF-8 text (DTM replays stored payloads verbatim); for gRPC the request message's bytes. */
  body: string;
  /** The status the recorder answered with. */
  status: number;
  /** `Date.now()` when the request arrived. */
  at: number;
  /** `Date.now()` when the answer was sent. */
  answeredAt: number;
}

/** What a recorder endpoint answers: a status (with a DTM-style body) or a status and an explicit body. */
export type ScriptedAnswer = number | { status: number; body: unknown };

/** Computes the answer to a call (may wait, call DTM, ...): a test's stand-in for a real branch. */
export type CallHandler = (call: Omit<RecordedCall, 'status' | 'answeredAt'>) => ScriptedAnswer | Promise<ScriptedAnswer>;

/** A running recorder app. */
export interface Recorder {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** `host:port` of its gRPC side. */
  readonly grpcAddress: string;
  /** Every call received, in the order they were answered. */
  readonly calls: readonly RecordedCall[];
  /** Full URL of `path` on this recorder. */
  urlFor(path: string): string;
  /** The gRPC target of `path` (`/TransIn` → `host:port/recorder.Recorder/TransIn`), recorded under the same path. */
  grpcTargetFor(path: string): string;
  /** Calls received on `path`, optionally only those of transaction `gid`. */
  callsTo(path: string, gid?: string): RecordedCall[];
  /** Calls of transaction `gid` on any path. */
  callsFor(gid: string): RecordedCall[];
  /** Answers for the next calls to `path`, in order; the last one repeats. Unscripted paths answer 200. */
  answer(path: string, ...answers: ScriptedAnswer[]): void;
  /** Lets `handler` compute every answer of `path`. */
  handle(path: string, handler: CallHandler): void;
  /** Waits until `path` received at least `count` calls (of `gid`, if given); fails after `timeoutMs`. */
  waitForCalls(path: string, count: number, options?: { gid?: string; timeoutMs?: number }): Promise<RecordedCall[]>;
  /** Forgets calls and scripts. */
  reset(): void;
  close(): Promise<void>;
}

interface RecorderState {
  calls: RecordedCall[];
  scripts: Map<string, ScriptedAnswer[] | CallHandler>;
}

const STATE = Symbol('RECORDER_STATE');

/** Success body: must never contain the words DTM scans bodies for (FAILURE, ONGOING). */
const DEFAULT_BODIES: Record<number, unknown> = {
  200: { result: 'recorded' },
  409: { dtm_result: 'FAILURE', message: 'recorder answered 409' },
  425: { dtm_result: 'ONGOING', message: 'recorder answered 425' },
};

@Controller()
class RecorderController {
  constructor(@Inject(STATE) private readonly state: RecorderState) {}

  @All('{*path}')
  async record(@Req() req: IncomingMessage, @Res() res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://recorder');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : (value ?? '');
    const received = {
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body: await readBody(req),
      at: Date.now(),
    };
    const { status, body: answerBody } = await answerFor(this.state, received);
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    res.end(typeof answerBody === 'string' ? answerBody : JSON.stringify(answerBody));
  }
}

/** The scripted answer to `received` (recorded with it): a status and a body. */
async function answerFor(state: RecorderState, received: Omit<RecordedCall, 'status' | 'answeredAt'>): Promise<{ status: number; body: unknown }> {
  const script = state.scripts.get(received.path);
  let next: ScriptedAnswer;
  if (typeof script === 'function') next = await script(received);
  else next = script && script.length > 1 ? script.shift()! : (script?.[0] ?? 200);
  const answer = typeof next === 'number' ? { status: next, body: DEFAULT_BODIES[next] ?? { message: `recorder answered ${next}` } } : next;
  state.calls.push({ ...received, status: answer.status, answeredAt: Date.now() });
  return answer;
}

/** The gRPC service name of the recorder's targets. */
const GRPC_SERVICE = 'recorder.Recorder';

/** DTM's `dtm-*` metadata, read into the query a DTM HTTP call would carry. */
const DTM_METADATA = /^dtm-(.+)$/;

/** The gRPC code DTM reads as what the HTTP status says: 200 OK, 409 ABORTED (FAILURE), 425 FAILED_PRECONDITION (ONGOING), else UNKNOWN (retried). */
function grpcCodeOf(httpStatus: number): number {
  if (httpStatus === 200) return grpcStatus.OK;
  if (httpStatus === 409) return grpcStatus.ABORTED;
  if (httpStatus === 425) return grpcStatus.FAILED_PRECONDITION;
  return grpcStatus.UNKNOWN;
}

/** The recorder's gRPC side: any method of `recorder.Recorder`, registered when a test asks for its target; bytes in, bytes out. */
async function startGrpcSide(state: RecorderState): Promise<{ address: string; ensure(path: string): void; close(): Promise<void> }> {
  const server = new Server();
  const registered = new Set<string>();
  const identity = (bytes: Buffer) => bytes;
  const ensure = (path: string) => {
    if (registered.has(path)) return;
    registered.add(path);
    const handler = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      const query: Record<string, string> = {};
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries((call.metadata as Metadata).getMap())) {
        const text = Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
        const dtm = DTM_METADATA.exec(key);
        if (dtm) query[dtm[1]] = text;
        else headers[key] = text;
      }
      const received = { method: 'GRPC', path, query, headers, body: call.request.toString('utf8'), at: Date.now() };
      answerFor(state, received).then(
        ({ status, body }) => {
          const code = grpcCodeOf(status);
          const text = typeof body === 'string' ? body : JSON.stringify(body);
          if (code === grpcStatus.OK) return callback(null, Buffer.from(text, 'utf8'));
          const message = body && typeof body === 'object' && 'message' in body ? String((body as { message: unknown }).message) : text;
          callback({ code, details: message, metadata: new Metadata() } as never);
        },
        (err: unknown) => callback({ code: grpcStatus.INTERNAL, details: String(err) } as never),
      );
    };
    server.register(`/${GRPC_SERVICE}${path}`, handler, identity, identity, 'unary');
  };
  const port = await bindGrpcServer(server);
  return {
    address: `127.0.0.1:${port}`,
    ensure,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

@Module({})
class RecorderModule {
  static withState(state: RecorderState): DynamicModule {
    return { module: RecorderModule, controllers: [RecorderController], providers: [{ provide: STATE, useValue: state }] };
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * Starts a small Nest app (Express) on 127.0.0.1 that records every request on any path (method,
 * path, query, headers, raw body) and answers as scripted per path with {@link Recorder.answer}:
 * 200 by default, or 409 / 425 / 500 / any status. Body parsing is off, so bodies are kept verbatim.
 * Beside it, a gRPC server records calls to `recorder.Recorder/<Path>` the same way, answering
 * the gRPC code DTM reads as that status (409 → ABORTED, 425 → FAILED_PRECONDITION, other → UNKNOWN).
 */
export async function startRecorder(): Promise<Recorder> {
  const state: RecorderState = { calls: [], scripts: new Map() };
  const app: INestApplication = await NestFactory.create(RecorderModule.withState(state), { bodyParser: false, logger: false, forceCloseConnections: true });
  keepConnectionsForDtm(app);
  await app.listen(0, '127.0.0.1');
  const grpc = await startGrpcSide(state);
  const address = app.getHttpServer().address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  const callsTo = (path: string, gid?: string) => state.calls.filter((c) => c.path === path && (gid === undefined || c.query.gid === gid));
  return {
    url,
    grpcAddress: grpc.address,
    get calls() {
      return state.calls;
    },
    urlFor: (path) => `${url}${path}`,
    grpcTargetFor(path) {
      grpc.ensure(path);
      return `${grpc.address}/${GRPC_SERVICE}${path}`;
    },
    callsTo,
    callsFor: (gid) => state.calls.filter((c) => c.query.gid === gid),
    answer(path, ...answers) {
      if (answers.length === 0) throw new Error('answer() needs at least one answer');
      state.scripts.set(path, [...answers]);
    },
    handle(path, handler) {
      state.scripts.set(path, handler);
    },
    async waitForCalls(path, count, options = {}) {
      const deadline = Date.now() + (options.timeoutMs ?? 20_000);
      for (;;) {
        const calls = callsTo(path, options.gid);
        if (calls.length >= count) return calls;
        if (Date.now() >= deadline) {
          throw new Error(`${path} received ${calls.length} of ${count} expected calls within ${options.timeoutMs ?? 20_000} ms`);
        }
        await sleep(50);
      }
    },
    reset() {
      state.calls.length = 0;
      state.scripts.clear();
    },
    async close() {
      await grpc.close();
      await app.close();
    },
  };
}
