// The child process of observability-instrumented.spec.ts, started with
// `node --import .build/test/e2e/observability-instrumented.preload.js` (OpenTelemetry's HTTP and
// gRPC instrumentations must patch `http` and `@grpc/grpc-js` before they load, which they cannot
// inside Jest): the observability app (AP and participant in one, every branch behind the
// PostgreSQL barrier) on the PostgreSQL database at URL `process.argv[2]` (the test's). Over IPC:
//   { saga: 'http' | 'grpc' } -> runs a saga that rolls back (transOut 30 from account 1, transIn to
//                               account 2 refuses); answers { gid, status, balances, spans }, the spans
//                               of the gid's trace once its four branch calls have ended
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
const t = await startObservedApp({ postgres: { url: process.argv[2] } } as FileDatabases, {});

async function rolledBackSaga(protocol: DtmProtocol) {
  await t.sql('UPDATE account SET balance = 100');
  const gid = await t.client.generateGid();
  const final = await t.client.newSaga(gid, { protocol }).add('transOut', { account: 1, amount: 30 }).add('transIn', { account: 2, amount: 30, fail: 'yes' }).submitAndWait();
  // the server spans end as their answers go out, which can be just after DTM recorded the last one
  const ofTrace = () => {
    const ap = exporter.getFinishedSpans().find((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    return ap ? exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === ap.spanContext().traceId) : [];
  };
  for (let waited = 0; ofTrace().filter((s) => s.attributes['dtm.op'] !== undefined).length < 4 && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  return { gid, status: final.status, balances: await t.balances([1, 2]), spans: ofTrace().map(report) };
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

process.on('message', (message: { saga?: DtmProtocol; relay?: DtmProtocol; traceparent?: string; close?: boolean }) => {
  if (message.close) {
    void t.close().then(() => process.exit(0));
    return;
  }
  (message.relay ? relayed(message.relay, message.traceparent!) : rolledBackSaga(message.saga!)).then(
    (result) => process.send!(result),
    (err: unknown) => process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
