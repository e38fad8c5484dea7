// The callers of bench/saga-throughput: one two-step saga with wait_result, made by the library and
// by hand-written calls that share no code with it. Separate from the benchmark so that a profiling
// script can drive them against anything that speaks DTM's API (a fake DTM, for a tight loop).
//
// The saga, everywhere: NewGid, then Submit of a saga with steps TransOut / TransIn (compensations
// TransOutRevert / TransInRevert, all http:// URLs of the branch server), the payload `{ amount: 30 }`
// JSON-encoded once per step per saga, the module's default options (timeout_to_fail 0: no saga timeout, request_timeout 30,
// retry_interval 10), and a 10 s deadline on every call to DTM. Over gRPC the steps stay http:// URLs
// (DTM calls them over HTTP, with the payload's bytes as the body), so every driver's branches do
// the same work and only the caller's conversation with DTM differs.
import http from 'node:http';
import grpc from '@grpc/grpc-js';
import axios from 'axios';
import { context, metrics, propagation, SpanStatusCode, trace } from '@opentelemetry/api';
import { randomBytes } from 'node:crypto';
import { DtmClient, DtmInstrumentation, resolveDtmConfig } from 'nestjs-dtm';
import { registerDroppingOtelSdk } from './otel-sdk.js';
import protobuf from 'protobufjs';

/** Where the drivers send their sagas. */
export interface SagaEndpoints {
  /** DTM's HTTP API (`…/api/dtmsvr`). */
  serverUrl: string;
  /** DTM's gRPC API (`host:port`). */
  grpcAddress: string;
  /** The branch server (`http://host:port`). */
  branchUrl: string;
}

export type Protocol = 'http' | 'grpc';

/** One way of running the saga. */
export interface SagaDriver {
  name: string;
  protocol: Protocol;
  /** library: DtmClient; hand: the same calls written by hand (the baseline); reference: a leaner client, for information. */
  role: 'library' | 'hand' | 'reference' | 'auth' | 'otel-off' | 'otel-sdk-off' | 'otel-sdk' | 'otel-inst-off' | 'otel-inst' | 'otel-sdk-hand' | 'otel-inst-hand';
  run(): Promise<void>;
  close(): void;
}

const PAYLOAD = { amount: 30 };
const TIMEOUT_MS = 10_000;

/**
 * DTM's gRPC API as far as these calls need it, written from `dtmgimp.proto` of DTM v1.19.0
 * (`client/dtmgrpc/dtmgpb/dtmgimp.proto`), not from the library's descriptor.
 */
const DTM_PROTO = `
syntax = "proto3";
package dtmgimp;
message DtmTransOptions {
  bool WaitResult = 1;
  int64 TimeoutToFail = 2;
  int64 RetryInterval = 3;
  map<string, string> BranchHeaders = 5;
  int64 RequestTimeout = 6;
  int64 RetryLimit = 7;
}
message DtmRequest {
  string Gid = 1;
  string TransType = 2;
  DtmTransOptions TransOptions = 3;
  string CustomedData = 4;
  repeated bytes BinPayloads = 5;
  string QueryPrepared = 6;
  string Steps = 7;
  map<string, string> ReqExtra = 8;
  string RollbackReason = 9;
}
message DtmGidReply {
  string Gid = 1;
}
`;

/** Which drivers there are, in the order the benchmark runs them. */
export const DRIVERS: { protocol: Protocol; role: SagaDriver['role']; name: string }[] = [
  { protocol: 'http', role: 'library', name: 'DtmClient' },
  { protocol: 'http', role: 'hand', name: 'by hand, axios' },
  { protocol: 'http', role: 'reference', name: 'by hand, node:http' },
  { protocol: 'grpc', role: 'library', name: 'DtmClient' },
  { protocol: 'grpc', role: 'hand', name: 'by hand, grpc-js' },
];

/** With `--auth`: DtmClient with authenticated branch calls (every step's tokens signed into the saga's branch_headers). */
export const AUTH_DRIVERS: { protocol: Protocol; role: SagaDriver['role']; name: string }[] = [
  { protocol: 'http', role: 'auth', name: 'DtmClient, authenticated' },
  { protocol: 'grpc', role: 'auth', name: 'DtmClient, authenticated' },
];

/**
 * With `--otel`: `none`: DtmClient with its instrumentation off (`openTelemetry: false`: the API
 * never loaded), against the `library` driver, the module's default (the API installed, no SDK
 * registered); `sdk`: in processes with an OpenTelemetry SDK registered that records everything and
 * exports it nowhere (bench/otel-sdk.ts), DtmClient with its instrumentation off and on;
 * `instrumented`: the same with the SDK's HTTP and gRPC instrumentations (a client span per call
 * to DTM), registered before the caller loads ({@link OTEL_PRELOAD}). With `--hand` as well, one
 * more per SDK setting: the instrumentation off, the transaction's telemetry written by hand
 * ({@link handTelemetryDriver}).
 */
export const OTEL_DRIVERS: { protocol: Protocol; role: SagaDriver['role']; name: string; otel: 'none' | 'sdk' | 'instrumented' }[] = (['http', 'grpc'] as const).flatMap((protocol) => [
  { protocol, role: 'otel-off' as const, name: 'DtmClient, instrumentation off', otel: 'none' as const },
  { protocol, role: 'otel-sdk-off' as const, name: 'DtmClient, OTel SDK, instrumentation off', otel: 'sdk' as const },
  { protocol, role: 'otel-sdk' as const, name: 'DtmClient, OTel SDK, instrumentation on', otel: 'sdk' as const },
  { protocol, role: 'otel-inst-off' as const, name: 'DtmClient, OTel SDK + HTTP/gRPC instrumentations, instrumentation off', otel: 'instrumented' as const },
  { protocol, role: 'otel-inst' as const, name: 'DtmClient, OTel SDK + HTTP/gRPC instrumentations, instrumentation on', otel: 'instrumented' as const },
  { protocol, role: 'otel-sdk-hand' as const, name: 'DtmClient, OTel SDK, telemetry by hand', otel: 'sdk' as const },
  { protocol, role: 'otel-inst-hand' as const, name: 'DtmClient, OTel SDK + HTTP/gRPC instrumentations, telemetry by hand', otel: 'instrumented' as const },
]);

/** The roles whose caller process registers the SDK with its instrumentations before it loads (`node --import`, {@link OTEL_PRELOAD}). */
export const PRELOADED_ROLES: readonly SagaDriver['role'][] = ['otel-inst-off', 'otel-inst', 'otel-inst-hand'];

/** The driver of `protocol` and `role` (one of {@link DRIVERS}, {@link AUTH_DRIVERS} or {@link OTEL_DRIVERS}). */
export function sagaDriver(endpoints: SagaEndpoints, protocol: Protocol, role: SagaDriver['role']): SagaDriver {
  if (role === 'library' || role === 'auth') return libraryDriver(endpoints, protocol, role === 'auth');
  if (role === 'otel-sdk' || role === 'otel-sdk-off' || role === 'otel-sdk-hand') registerDroppingOtelSdk(); // in this driver's caller process only
  if (role === 'otel-sdk-hand' || role === 'otel-inst-hand') return handTelemetryDriver(endpoints, protocol, role);
  if (role === 'otel-off' || role === 'otel-sdk-off' || role === 'otel-inst-off') return libraryDriver(endpoints, protocol, false, role, new DtmInstrumentation({ openTelemetry: false }));
  if (role === 'otel-sdk' || role === 'otel-inst') return libraryDriver(endpoints, protocol, false, role, new DtmInstrumentation());
  if (protocol === 'grpc' && role === 'hand') return grpcDriver(endpoints);
  const driver = protocol === 'http' ? httpDrivers(endpoints).find((d) => d.role === role) : undefined;
  if (!driver) throw new Error(`no ${protocol} driver ${role}`);
  return driver;
}

/** The drivers of `protocols`, in the order of {@link DRIVERS}. */
export function sagaDrivers(endpoints: SagaEndpoints, protocols: Protocol[]): SagaDriver[] {
  return DRIVERS.filter((d) => protocols.includes(d.protocol)).map((d) => sagaDriver(endpoints, d.protocol, d.role));
}

/**
 * (a) DtmClient, the same code for both protocols but for `protocol`; `auth`: with authenticated
 * branch calls; `instrumentation`: as DtmModule gives it (default: the module's default options).
 */
function libraryDriver(
  { serverUrl, grpcAddress, branchUrl }: SagaEndpoints,
  protocol: Protocol,
  auth = false,
  role: SagaDriver['role'] = auth ? 'auth' : 'library',
  instrumentation = new DtmInstrumentation(),
): SagaDriver {
  const branchAuthKeys = auth ? [randomBytes(33).toString('base64')] : undefined;
  const client = new DtmClient(resolveDtmConfig({ config: { serverUrl, grpcServer: grpcAddress, protocol, branchAuthKeys } }, {}), undefined, undefined, undefined, undefined, instrumentation);
  return {
    name: OTEL_DRIVERS.find((d) => d.role === role)?.name ?? (auth ? 'DtmClient, authenticated' : 'DtmClient'),
    protocol,
    role,
    run: async () => {
      const gid = await client.generateGid();
      await client
        .newSaga(gid, { waitResult: true })
        .add(`${branchUrl}/TransOut`, `${branchUrl}/TransOutRevert`, PAYLOAD)
        .add(`${branchUrl}/TransIn`, `${branchUrl}/TransInRevert`, PAYLOAD)
        .submit();
    },
    close: () => client.onModuleDestroy(),
  };
}

/**
 * DtmClient with its instrumentation off, the saga given by hand, with @opentelemetry/api, the least
 * of the telemetry the module gives it: a span from the gid to the outcome (a child of the active
 * context), the calls to DTM run in its context, its W3C trace context in the saga's
 * `branch_headers`, an error status on failure, the duration in an attribute-free histogram.
 * Nothing counted by attribute: a floor for the module's figures, not a copy of the module.
 */
function handTelemetryDriver(endpoints: SagaEndpoints, protocol: Protocol, role: SagaDriver['role']): SagaDriver {
  const { serverUrl, grpcAddress, branchUrl } = endpoints;
  const client = new DtmClient(resolveDtmConfig({ config: { serverUrl, grpcServer: grpcAddress, protocol } }, {}), undefined, undefined, undefined, undefined, new DtmInstrumentation({ openTelemetry: false }));
  const tracer = trace.getTracer('bench-by-hand');
  const duration = metrics.getMeter('bench-by-hand').createHistogram('bench.saga.duration', { unit: 's' });
  return {
    name: OTEL_DRIVERS.find((d) => d.role === role)!.name,
    protocol,
    role,
    run: async () => {
      const started = performance.now();
      const gid = await client.generateGid();
      const span = tracer.startSpan('DTM saga', { attributes: { 'dtm.gid': gid, 'dtm.trans_type': 'saga', 'dtm.protocol': protocol } });
      const active = trace.setSpan(context.active(), span);
      const branchHeaders: Record<string, string> = {};
      propagation.inject(active, branchHeaders);
      try {
        await context.with(active, () =>
          client
            .newSaga(gid, { waitResult: true, branchHeaders })
            .add(`${branchUrl}/TransOut`, `${branchUrl}/TransOutRevert`, PAYLOAD)
            .add(`${branchUrl}/TransIn`, `${branchUrl}/TransInRevert`, PAYLOAD)
            .submit(),
        );
        span.setAttribute('dtm.outcome', 'succeeded');
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
        throw err;
      } finally {
        span.end();
        duration.record((performance.now() - started) / 1000);
      }
    },
    close: () => client.onModuleDestroy(),
  };
}

/** (b) by hand with axios, set up as an app would for DTM (keep-alive, no redirects, bodies as text); (c) bare node:http. */
function httpDrivers({ serverUrl, branchUrl }: SagaEndpoints): SagaDriver[] {
  const sagaBody = (gid: string) =>
    JSON.stringify({
      gid,
      trans_type: 'saga',
      wait_result: true,
      timeout_to_fail: 0,
      request_timeout: 30,
      retry_interval: 10,
      concurrent: false,
      steps: [
        { action: `${branchUrl}/TransOut`, compensate: `${branchUrl}/TransOutRevert` },
        { action: `${branchUrl}/TransIn`, compensate: `${branchUrl}/TransInRevert` },
      ],
      payloads: [JSON.stringify(PAYLOAD), JSON.stringify(PAYLOAD)],
      protocol: '',
    });

  const axiosAgent = new http.Agent({ keepAlive: true });
  const byAxios = axios.create({
    adapter: 'http',
    httpAgent: axiosAgent,
    timeout: TIMEOUT_MS,
    maxRedirects: 0,
    responseType: 'text',
    transformRequest: [(d: unknown) => d],
    transformResponse: [(d: unknown) => d],
  });
  const json = { 'content-type': 'application/json' };

  const nodeAgent = new http.Agent({ keepAlive: true });
  return [
    {
      name: 'by hand, axios',
      protocol: 'http',
      role: 'hand',
      run: async () => {
        const { data } = await byAxios.get<string>(`${serverUrl}/newGid`);
        const { gid } = JSON.parse(data) as { gid: string };
        const { data: answer } = await byAxios.post<string>(`${serverUrl}/submit`, sagaBody(gid), { headers: json }); // throws unless 2xx
        if (answer.includes('FAILURE')) throw new Error(`submit: ${answer}`);
      },
      close: () => axiosAgent.destroy(),
    },
    {
      name: 'by hand, node:http',
      protocol: 'http',
      role: 'reference',
      run: async () => {
        const gidAnswer = await request(nodeAgent, 'GET', `${serverUrl}/newGid`);
        const { gid } = JSON.parse(gidAnswer.text) as { gid: string };
        const res = await request(nodeAgent, 'POST', `${serverUrl}/submit`, sagaBody(gid));
        if (res.status !== 200 || res.text.includes('FAILURE')) throw new Error(`submit answered ${res.status}: ${res.text}`);
      },
      close: () => nodeAgent.destroy(),
    },
  ];
}

/** (b) by hand with @grpc/grpc-js: DTM's proto above parsed with protobufjs, unary calls on a plain client. */
function grpcDriver({ grpcAddress, branchUrl }: SagaEndpoints): SagaDriver {
  const root = protobuf.parse(DTM_PROTO, { keepCase: true }).root;
  const DtmRequest = root.lookupType('dtmgimp.DtmRequest');
  const DtmGidReply = root.lookupType('dtmgimp.DtmGidReply');
  const empty = Buffer.alloc(0);
  const EMPTY_REPLY = {}; // google.protobuf.Empty (grpc-js refuses a null reply: "No message received")
  const encodeRequest = (value: object) => DtmRequest.encode(value).finish() as Buffer;
  const decodeGid = (bytes: Buffer) => DtmGidReply.decode(bytes) as unknown as { Gid: string };
  const client = new grpc.Client(grpcAddress, grpc.credentials.createInsecure());
  const unary = <Req, Res>(method: string, serialize: (value: Req) => Buffer, deserialize: (bytes: Buffer) => Res, argument: Req) =>
    new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(method, serialize, deserialize, argument, { deadline: Date.now() + TIMEOUT_MS }, (err, value) => (err ? reject(err) : resolve(value!)));
    });
  return {
    name: 'by hand, grpc-js',
    protocol: 'grpc',
    role: 'hand',
    run: async () => {
      const { Gid } = await unary('/dtmgimp.Dtm/NewGid', () => empty, decodeGid, null);
      // ABORTED (a reject) unless the saga's first round succeeded
      await unary('/dtmgimp.Dtm/Submit', encodeRequest, () => EMPTY_REPLY, {
        Gid,
        TransType: 'saga',
        TransOptions: { WaitResult: true, TimeoutToFail: 0, RetryInterval: 10, RequestTimeout: 30 },
        BinPayloads: [Buffer.from(JSON.stringify(PAYLOAD)), Buffer.from(JSON.stringify(PAYLOAD))],
        Steps: JSON.stringify([
          { action: `${branchUrl}/TransOut`, compensate: `${branchUrl}/TransOutRevert` },
          { action: `${branchUrl}/TransIn`, compensate: `${branchUrl}/TransInRevert` },
        ]),
      });
    },
    close: () => client.close(),
  };
}

/** One HTTP request with node:http; resolves with status and body text. */
function request(agent: http.Agent, method: 'GET' | 'POST', url: string, data?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`timeout: ${url}`)));
    req.end(data);
  });
}
