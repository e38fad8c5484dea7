// gRPC in the tests: the test apps' proto, the options of their Nest gRPC microservices, and a
// client that calls a gRPC branch directly, as DTM would (dtm-* metadata).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { credentials, Metadata, Client, ServerCredentials, status, type Server, type ServiceError } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import { DTM_WORKFLOW_PROTO } from 'nestjs-dtm';
import { freePort } from './services/process.js';

/** The project's root: the nearest directory with a package.json (this file also runs compiled, from .build/). */
function projectRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/**
 * Binds a grpc-js `server` (insecure) on 127.0.0.1 at a {@link freePort} port, one this run has not
 * used before, and gives the port: never port 0, whose port the kernel may hand out again to a later
 * file's server, which the shared DTM then reaches only after its reconnect backoff. A port taken
 * meanwhile by a process outside the claims is replaced by another (5 tries).
 */
export async function bindGrpcServer(server: Server): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}

/** The services of the test apps (test/e2e/protos/tests.proto, package `tests`). */
export const TESTS_PROTO = join(projectRoot(), 'test', 'e2e', 'protos', 'tests.proto');

/** The stock service of services-by-name.spec.ts (test/e2e/protos/stock.proto, package `stock`). */
export const STOCK_PROTO = join(projectRoot(), 'test', 'e2e', 'protos', 'stock.proto');

/** Messages of the recorder's gRPC side (test/e2e/protos/recorder.proto, package `recorder`): a reply with a bytes field. */
export const RECORDER_PROTO = join(projectRoot(), 'test', 'e2e', 'protos', 'recorder.proto');

/** The chaos bank's services (test/support/chaos/chaos.proto, package `chaos`). */
export const CHAOS_PROTO = join(projectRoot(), 'test', 'support', 'chaos', 'chaos.proto');

/** How the test apps load it, on both sides (Nest's gRPC server, DtmModule's grpcProtos): int64 as numbers, defaults filled in. */
export const TESTS_LOADER = { longs: Number, defaults: true } as const;

/** DtmModule's `grpcProtos` for the test apps' services. */
export const TESTS_GRPC_PROTOS = { protoPath: TESTS_PROTO, loader: TESTS_LOADER };

/**
 * Options of a Nest gRPC microservice serving the test apps' services on `url`; `workflowResume`:
 * DTM's workflow resume service too (the package's protos/workflow.proto); `'proto only'`: its
 * proto loaded but the package `workflow` not listed (Nest then serves no resume).
 */
export function testsGrpcOptions(url: string, { workflowResume = false as boolean | 'proto only' } = {}): GrpcOptions {
  const protos = workflowResume
    ? { package: workflowResume === 'proto only' ? ['tests'] : ['tests', 'workflow'], protoPath: [TESTS_PROTO, DTM_WORKFLOW_PROTO] }
    : { package: 'tests', protoPath: TESTS_PROTO };
  return { transport: Transport.GRPC, options: { ...protos, url, loader: TESTS_LOADER } };
}

const definition = protoLoader.loadSync(TESTS_PROTO, TESTS_LOADER);

/** The HTTP status DTM's protocol gives a gRPC code. */
const HTTP_STATUS_OF_CODE = { [status.OK]: 200, [status.ABORTED]: 409, [status.FAILED_PRECONDITION]: 425, [status.INVALID_ARGUMENT]: 400 };

/** `body` encoded as the request type of `service`'s `method` (`tests.PgBank`, `TransOut`). */
export function requestBytes(service: string, method: string, body: object): Buffer {
  return (definition[service] as Record<string, { requestSerialize(v: unknown): Buffer }>)[method].requestSerialize(body);
}

/** What a direct gRPC call answered, with the HTTP status DTM's protocol gives its code (OK 200, ABORTED 409, FAILED_PRECONDITION 425, INVALID_ARGUMENT 400, else 500). */
export interface GrpcAnswer {
  status: number;
  code: number;
  text: string;
}

/**
 * Calls `target` (`host:port/tests.Service/Method`) with `body` encoded as the method's request
 * type (or `undefined`: an empty message, as DTM sends for phase 2 and back-checks; then the
 * method may be of any service, e.g. `workflow.Workflow/Execute`), `query`'s
 * keys as `dtm-*` metadata, and `headers` as plain metadata.
 */
export function callGrpc(target: string, body: object | undefined, query: Record<string, string>, headers: Record<string, string> = {}): Promise<GrpcAnswer> {
  const slash = target.indexOf('/');
  const [server, path] = [target.slice(0, slash), target.slice(slash)];
  const [, service, method] = path.split('/');
  const client = new Client(server, credentials.createInsecure());
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(query)) metadata.set(`dtm-${key}`, value);
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  const bytes = body === undefined ? Buffer.alloc(0) : requestBytes(service, method, body);
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, metadata, { deadline: Date.now() + 10_000 }, (err: ServiceError | null, reply?: Buffer) => {
      client.close();
      const code = err ? err.code : status.OK;
      const httpStatus = (HTTP_STATUS_OF_CODE as Record<number, number>)[code] ?? 500;
      resolve({ status: httpStatus, code, text: err ? err.details : (reply ?? Buffer.alloc(0)).toString('utf8') });
    });
  });
}
