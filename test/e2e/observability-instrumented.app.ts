// The child process of observability-instrumented.spec.ts, started with
// `node --import .build/test/e2e/observability-instrumented.preload.js` (OpenTelemetry's HTTP and
// gRPC instrumentations must patch `http` and `@grpc/grpc-js` before they load, which they cannot
// inside Jest): the observability app (AP and participant in one, every branch behind the
// PostgreSQL barrier) on the PostgreSQL database at URL `process.argv[2]` (the test's), talking to the DTM server
// whose server_url is `process.argv[3]` and gRPC address `process.argv[4]` (the test file's own). Over IPC:
//   { saga: 'http' | 'grpc' } -> runs a saga that rolls back (transOut 30 from account 1, transIn to
//                               account 2 refuses); answers { gid, status, balances, spans }, the spans
//                               of the gid's trace once its four branch calls have ended
//   { tcc: 'http' | 'grpc', fail } -> runs a TCC transaction (tccOut 30 from account 1; with `fail` a
//                               second Try of 500 from account 2 refuses, so it rolls back); answers
//                               { gid, status, spans }, the spans of the gid's trace
//   { msg: 'http' | 'grpc' }   -> a two-phase message whose local transaction throws: the back-check
//                               `outbox` answers FAILURE and the message is aborted; answers
//                               { gid, status, thrown, spans }, the spans of the gid's trace
//   { relay: 'http' | 'grpc', traceparent }
//                             -> POSTs /relay/orders with `x-tenant: acme` and `traceparent`: a message
//                               over that protocol whose branch starts saga `<gid>-nested`; answers
//                               { gid, nestedStatus, balances } once the nested saga has ended
//   { close: true }           -> closes the app and exits
import type { DtmProtocol } from 'nestjs-dtm';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { FileDatabases } from '../support/databases.js';
import { startObservedApp } from './observability.app.js';
import { exporter } from './observability-instrumented.preload.js';

/** A span as the test reads it. */
export interface ReportedSpan {
  name: string;
  /** The instrumentation scope that made it (`nestjs-dtm`, `@opentelemetry/instrumentation-http`, ...). */
  scope: string;
  /** `SpanKind`: 1 SERVER, 2 CLIENT, 0 INTERNAL. */
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status: number;
}

const report = (s: ReadableSpan): ReportedSpan => ({
  name: s.name,
  scope: s.instrumentationScope.name,
  kind: s.kind,
  traceId: s.spanContext().traceId,
  spanId: s.spanContext().spanId,
  parentSpanId: s.parentSpanContext?.spanId,
  attributes: { ...s.attributes },
  status: s.status.code,
});

// the app uses the PostgreSQL database only
const [postgresUrl, serverUrl, grpcServer] = process.argv.slice(2);
const t = await startObservedApp({ postgres: { url: postgresUrl } } as FileDatabases, {}, { serverUrl, grpcServer, ...(process.env.PASS_TRACE_CONTEXT === 'false' ? { passTraceContext: false } : {}) });

async function rolledBackSaga(protocol: DtmProtocol) {
  await t.sql('UPDATE account SET balance = 100');
  const gid = await t.client.generateGid();
  const final = await t.client.newSaga(gid, { protocol }).add('transOut', { account: 1, amount: 30 }).add('transIn', { account: 2, amount: 30, fail: 'yes' }).submitAndWait();
  return { gid, status: final.status, balances: await t.balances([1, 2]), spans: (await traceOf(gid, 4)).map(report) };
}

/** The finished spans of the trace of transaction `gid`'s AP span, once `branchCalls` branch calls of it have ended (or 5 s passed). */
async function traceOf(gid: string, branchCalls: number): Promise<ReadableSpan[]> {
  // the server spans end as their answers go out, which can be just after DTM recorded the last one
  const ofTrace = () => {
    const ap = exporter.getFinishedSpans().find((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    return ap ? exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === ap.spanContext().traceId) : [];
  };
  for (let waited = 0; ofTrace().filter((s) => s.attributes['dtm.op'] !== undefined).length < branchCalls && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  return ofTrace();
}

async function tcc(protocol: DtmProtocol, fail: boolean) {
  await t.sql('UPDATE account SET balance = 100');
  const gid = await t.client.generateGid();
  const outcome = await t.client.tccGlobalTransactionAndWait(
    gid,
    async (tcc) => {
      await tcc.callBranch({ account: 1, amount: 30 }, 'tccOut');
      if (fail) await tcc.callBranch({ account: 2, amount: 500 }, 'tccOut'); // insufficient: FAILURE
    },
    { protocol },
  );
  return { gid, status: outcome.status, spans: (await traceOf(gid, fail ? 4 : 2)).map(report) };
}

/** A TCC that confirms (its Try called by the module, its Confirm by DTM); the spans of every trace holding a span of `gid`, once both calls ended (or 5 s passed). */
async function tccTraces(protocol: DtmProtocol) {
  await t.sql('UPDATE account SET balance = 100');
  const gid = await t.client.generateGid();
  const outcome = await t.client.tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({ account: 1, amount: 30 }, 'tccOut').then(() => undefined), { protocol });
  const traces = () => {
    const ids = new Set(exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid).map((s) => s.spanContext().traceId));
    return exporter.getFinishedSpans().filter((s) => ids.has(s.spanContext().traceId));
  };
  for (let waited = 0; traces().filter((s) => s.attributes['dtm.op'] !== undefined).length < 2 && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300)); // the server spans around them end as their answers go out
  return { gid, status: outcome.status, spans: traces().map(report) };
}

async function abortedMsg(protocol: DtmProtocol) {
  const gid = await t.client.generateGid();
  const thrown = await t.client
    .newMsg(gid, { protocol })
    .add('deliver', { account: 3, amount: 7 })
    .doAndSubmit('outbox', () => Promise.reject(new Error('the local transaction failed')))
    .then(
      () => 'nothing',
      (err: unknown) => (err as Error).message,
    );
  return { gid, status: (await t.client.waitForFinal(gid)).status, thrown, spans: (await traceOf(gid, 1)).map(report) };
}

async function relayed(protocol: DtmProtocol, traceparent: string) {
  await t.sql('UPDATE account SET balance = 100');
  const gid = await t.client.generateGid();
  const res = await fetch(`${t.url}/relay/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tenant': 'acme', traceparent },
    body: JSON.stringify({ gid, protocol }),
  });
  if (res.status !== 201) throw new Error(`POST /relay/orders answered ${res.status}: ${await res.text()}`);
  if ((await t.client.waitForFinal(gid)).status !== 'succeed') throw new Error(`message ${gid} did not succeed`);
  const nested = await t.client.waitForFinal(`${gid}-nested`);
  return { gid, nestedStatus: nested.status, balances: await t.balances([2, 3]) };
}

process.on('message', (message: { saga?: DtmProtocol; tcc?: DtmProtocol; tccTraces?: DtmProtocol; fail?: boolean; msg?: DtmProtocol; relay?: DtmProtocol; traceparent?: string; close?: boolean }) => {
  if (message.close) {
    void t.close().then(() => process.exit(0));
    return;
  }
  const run = message.tccTraces
    ? tccTraces(message.tccTraces)
    : message.relay
    ? relayed(message.relay, message.traceparent!)
    : message.tcc
      ? tcc(message.tcc, message.fail === true)
      : message.msg
        ? abortedMsg(message.msg)
        : rolledBackSaga(message.saga!);
  run.then(
    (result) => process.send!(result),
    (err: unknown) => process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
