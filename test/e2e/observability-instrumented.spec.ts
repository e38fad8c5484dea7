// The module's spans in an app set up as NodeSDK's auto-instrumentations set it up: OpenTelemetry's
// own HTTP, gRPC and Express instrumentations (in a child process: they patch `http` and `@grpc/grpc-js` as
// they load, which Jest's module loader bypasses) and the real DTM server. A branch call's
// attributes go on the server span the instrumentation made for that call: one span per call, in
// the AP's trace, a child of the AP's transaction span. The request context (pass-through headers)
// rides in the SDK's context there: a request's headers reach the transactions it starts, and
// those a branch starts.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { DtmProtocol } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS, useOwnDtm } from '../support/fixtures.js';
import type { ReportedSpan } from './observability-instrumented.app.js';

const built = join(resolve(import.meta.dirname, '..', '..'), '.build', 'test', 'e2e');
const SCOPES: Record<DtmProtocol, string> = { http: '@opentelemetry/instrumentation-http', grpc: '@opentelemetry/instrumentation-grpc' };

interface SagaReport {
  gid: string;
  status: string;
  balances: Record<number, number>;
  spans: ReportedSpan[];
  error?: string;
}

let child: ChildProcess;
/** Sends `message` to the child; resolves with its answer. */
function ask<T>(message: object): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once('message', (answer: T & { error?: string }) => (answer.error ? reject(new Error(answer.error)) : resolve(answer)));
    child.send(message);
  });
}

/** This file's databases, made once: a second fileDatabases() drops them (WITH FORCE), ending the first app's connections. */
let dbs: FileDatabases;

/**
 * This file's own DTM server: its tests count the spans of DTM's calls (one per call), and on the shared one another
 * file's /resetCronTime can have DTM's cron call a branch or a back-check again meanwhile (DTM calls at least once).
 */
const dtm = useOwnDtm('dtm-observability-instrumented');
const { queryTrans } = dtm;
/** The child's arguments: this file's PostgreSQL database, and the DTM server it talks to. */
const childArgs = () => [dbs.postgres.url, dtm.info.serverUrl, dtm.info.grpcAddress];

beforeAll(async () => {
  dbs = await fileDatabases();
  child = fork(join(built, 'observability-instrumented.app.js'), childArgs(), {
    execArgv: ['--import', pathToFileURL(join(built, 'observability-instrumented.preload.js')).href],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((ready, failed) => {
    child.once('message', () => ready());
    child.once('exit', (code) => failed(new Error(`the instrumented app exited with ${code}`)));
  });
});
afterAll(async () => {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.send({ close: true });
  await exited;
});

/** A branch call's span as `branch op name barrier outcome`. */
const line = (s: ReportedSpan) => `${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']} ${s.attributes['dtm.branch.name']} ${s.attributes['dtm.barrier.decision'] ?? '-'} ${s.attributes['dtm.outcome']}`;

describe.each(PROTOCOLS)('with OpenTelemetry HTTP and gRPC instrumentations, over %s', (protocol) => {
  it('a saga that rolls back: each branch call is one server span, with the dtm attributes, in the AP span\'s trace', async () => {
    const { gid, status, balances, spans } = await ask<SagaReport>({ saga: protocol });

    expect([status, balances]).toEqual(['failed', { 1: 100, 2: 100 }]);
    const ap = spans.filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(ap.map((s) => [s.scope, s.name, s.attributes['dtm.outcome']])).toEqual([['nestjs-dtm', 'DTM saga', 'failed']]);
    // the trace's server spans are DTM's calls of the branches: one each, the instrumentation's, with the module's attributes
    const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
    expect(servers.map((s) => [s.scope, s.traceId, s.parentSpanId, s.attributes['dtm.gid']])).toEqual(servers.map(() => [SCOPES[protocol], ap[0].traceId, ap[0].spanId, gid]));
    expect(servers.map(line).sort()).toEqual(
      ['01 action transOut executed success', '02 action transIn - failure', '02 compensate transIn null-compensation success', '01 compensate transOut executed success'].sort(),
    );
    // the AP's calls to DTM are client spans under the AP's span: the check of the gid (a query), the submit, then the wait's status queries
    const dtmCalls = spans.filter((s) => s.kind === SpanKind.CLIENT && s.traceId === ap[0].traceId && s.parentSpanId === ap[0].spanId);
    const calls = dtmCalls.map((s) => `${s.name} ${JSON.stringify(s.attributes)}`).map((c) => (/submit/i.test(c) ? 'submit' : c.includes(`/api/dtmsvr/query?gid=${gid}`) ? 'query' : c));
    expect(calls.length).toBeGreaterThan(2);
    expect(calls).toEqual(['query', 'submit', ...calls.slice(2).map(() => 'query')]);
    // over HTTP, Express's instrumentation made spans of the route's handlers under each server span:
    // the attributes went past them, to the server span
    const express = spans.filter((s) => s.scope === '@opentelemetry/instrumentation-express' && s.traceId === ap[0].traceId);
    expect(express.length > 0).toBe(protocol === 'http');
    // no second span for a call: every span with a branch op is one of those server spans
    expect(spans.filter((s) => s.attributes['dtm.op'] !== undefined && s.kind !== SpanKind.SERVER)).toEqual([]);
    const refused = servers.find((s) => s.attributes['dtm.outcome'] === 'failure')!;
    expect(refused.status).toBe(SpanStatusCode.ERROR);
    expect(refused.attributes).toMatchObject({ 'dtm.trans_type': 'saga', 'dtm.protocol': protocol, 'dtm.gid': gid });
    // the dtm attributes of a branch call: those docs/observability.md lists, and the outcome (the barrier decision: none, the action was refused before it)
    expect(Object.keys(refused.attributes).filter((k) => k.startsWith('dtm.')).sort()).toEqual(['dtm.branch.name', 'dtm.branch_id', 'dtm.gid', 'dtm.op', 'dtm.outcome', 'dtm.protocol', 'dtm.trans_type']);
    expect(servers.map((s) => `${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']} ${s.attributes['dtm.outcome'] === 'success' ? 'succeed' : 'failed'}`).sort()).toEqual(
      (await queryTrans(gid)).branches
        .filter((b) => b.status !== 'prepared')
        .map((b) => `${b.branch_id} ${b.op} ${b.status}`)
        .sort(),
    );
  });

  it.each([
    ['confirmed', false, 'succeed', 'submit'],
    ['rolled back', true, 'failed', 'abort'],
  ])('a TCC transaction %s: its calls to DTM, the wait\'s status queries last, are client spans under the AP\'s span', async (_, fail, status, end) => {
    const { gid, status: outcome, spans } = await ask<{ gid: string; status: string; spans: ReportedSpan[] }>({ tcc: protocol, fail });

    expect(outcome).toBe(status);
    const ap = spans.filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(ap.map((s) => [s.name, s.attributes['dtm.outcome']])).toEqual([['DTM tcc', status]]);
    // prepare and the query after it (DTM's record is this TCC's), the branches' registrations and Try calls, then the submit or abort and the wait's queries
    const kind = (s: ReportedSpan) => {
      const call = `${s.name} ${JSON.stringify(s.attributes)}`;
      if (/\/api\/dtmsvr\/(submit|abort)"|Dtm\/(Submit|Abort) /.test(call)) return /submit/i.test(call) ? 'submit' : 'abort';
      return call.includes(`/api/dtmsvr/query?gid=${gid}`) ? 'query' : /\/api\/dtmsvr\/prepare"|Dtm\/Prepare /.test(call) ? 'prepare' : 'other';
    };
    const calls = spans.filter((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === ap[0].spanId).map(kind).filter((k) => k !== 'other');
    expect(calls.length).toBeGreaterThan(3);
    expect(calls).toEqual(['prepare', 'query', end, ...calls.slice(3).map(() => 'query')]);
  });

  it('a two-phase message whose local transaction throws: the back-check and the abort are client spans under the AP\'s span', async () => {
    const { gid, status, thrown, spans } = await ask<{ gid: string; status: string; thrown: string; spans: ReportedSpan[] }>({ msg: protocol });

    expect([status, thrown]).toEqual(['failed', 'the local transaction failed']);
    const ap = spans.filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(ap.map((s) => [s.name, s.attributes['dtm.outcome']])).toEqual([['DTM msg', 'aborted']]);
    const kind = (s: ReportedSpan) => {
      const call = `${s.name} ${JSON.stringify(s.attributes)}`;
      if (/\/api\/dtmsvr\/prepare"|Dtm\/Prepare /.test(call)) return 'prepare';
      if (/\/api\/dtmsvr\/abort"|Dtm\/Abort /.test(call)) return 'abort';
      if (call.includes(`/api/dtmsvr/query?gid=${gid}`)) return 'query';
      return /\/bank\/query-prepared\?|PgBank\/QueryPrepared /.test(call) ? 'back-check' : call;
    };
    // the query after the prepare: DTM's record holds this message's branches (DTM takes a prepare of any gid it holds prepared)
    expect(spans.filter((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === ap[0].spanId).map(kind)).toEqual(['prepare', 'query', 'back-check', 'abort']);
    // the back-check's server span: in the trace, its decision the barrier's
    const checks = spans.filter((s) => s.kind === SpanKind.SERVER && s.attributes['dtm.op'] === 'msg');
    expect(checks.map((s) => [s.attributes['dtm.gid'], s.attributes['dtm.outcome']])).toEqual([[gid, 'failure']]);
  });

  it('pass-through headers under the SDK and its instrumentations: a request\'s x-tenant and trace reach the message it starts, and the saga its branch starts', async () => {
    const traceId = randomBytes(16).toString('hex');
    const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
    const { gid, nestedStatus, balances } = await ask<{ gid: string; nestedStatus: string; balances: Record<number, number> }>({ relay: protocol, traceparent });

    expect([nestedStatus, balances]).toEqual(['succeed', { 2: 105, 3: 95 }]);
    const outer = await queryTrans(gid);
    const nested = await queryTrans(`${gid}-nested`);
    expect([outer.transaction?.status, nested.transaction?.status]).toEqual(['succeed', 'succeed']);
    const headers = [outer.transaction?.branch_headers, nested.transaction?.branch_headers];
    expect(headers.map((h) => h?.['x-tenant'])).toEqual(['acme', 'acme']);
    // both in the inbound request's trace
    expect(headers.map((h) => h?.traceparent?.split('-')[1])).toEqual([traceId, traceId]);
  });
});

describe('with pass_trace_context: false, under the same instrumentations', () => {
  let untraced: ChildProcess;
  beforeAll(async () => {
    untraced = fork(join(built, 'observability-instrumented.app.js'), childArgs(), {
      execArgv: ['--import', pathToFileURL(join(built, 'observability-instrumented.preload.js')).href],
      env: { ...process.env, PASS_TRACE_CONTEXT: 'false' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((ready, failed) => {
      untraced.once('message', () => ready());
      untraced.once('exit', (code) => failed(new Error(`the instrumented app exited with ${code}`)));
    });
  });
  afterAll(async () => {
    if (!untraced || untraced.exitCode !== null) return;
    const exited = new Promise((r) => untraced.once('exit', r));
    untraced.send({ close: true });
    await exited;
  });

  it.each(PROTOCOLS)("a TCC over %s: DTM's Confirm starts a trace of its own, the Try the module calls itself is in the AP's trace (the client instrumentation's context); each call is two spans, the instrumentation's server span and the module's, under it, with the dtm attributes", async (protocol) => {
    const answer = await new Promise<{ gid: string; status: string; spans: ReportedSpan[]; error?: string }>((resolve) => {
      untraced.once('message', resolve);
      untraced.send({ tccTraces: protocol });
    });
    expect(answer.error).toBeUndefined();
    const { gid, status, spans } = answer;
    expect(status).toBe('succeed');
    const ap = spans.find((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined)!;
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    /** The instrumentation's server span `s` is under (itself or an ancestor). */
    const serverOf = (s: ReportedSpan): ReportedSpan | undefined => (s.kind === SpanKind.SERVER ? s : s.parentSpanId ? serverOf(byId.get(s.parentSpanId)!) : undefined);
    const calls = ['try', 'confirm'].map((op) => spans.find((s) => s.attributes['dtm.op'] === op)!);
    expect(calls.map((s) => [s.scope, s.name, s.kind])).toEqual([
      ['nestjs-dtm', 'DTM tcc try tccOut', SpanKind.INTERNAL],
      ['nestjs-dtm', 'DTM tcc confirm tccOut', SpanKind.INTERNAL],
    ]);
    const [tryServer, confirmServer] = calls.map(serverOf);
    expect([tryServer?.scope, confirmServer?.scope]).toEqual([SCOPES[protocol], SCOPES[protocol]]);
    expect([tryServer?.attributes['dtm.op'], confirmServer?.attributes['dtm.op']]).toEqual([undefined, undefined]);
    // the Try: in the AP's trace, under the client span of the module's call; the Confirm: the root of a trace of its own
    expect(calls.map((s) => s.traceId === ap.traceId)).toEqual([true, false]);
    expect(byId.get(tryServer!.parentSpanId!)?.kind).toBe(SpanKind.CLIENT);
    expect(confirmServer?.parentSpanId).toBeUndefined();
  });
});
