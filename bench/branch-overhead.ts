// bench/branch-overhead: what a decorated branch (@SagaAction, with DtmModule) costs over a plain
// Nest handler doing the same work (no nestjs-dtm), over HTTP (a POST route, on Express and on Fastify) and over gRPC
// (a @GrpcMethod of a hybrid app). Each app runs in its own process with the same settings
// (NODE_ENV, one core's worth of Node); this process is the loopback load generator: closed loops
// of keep-alive HTTP requests carrying DTM's query string and a JSON body, or of unary gRPC calls
// on one HTTP/2 connection (the request pre-encoded, DTM's dtm-* metadata), as DTM sends them. The
// gRPC calls are framed by hand on node:http2 by default: grpc-js's client costs about twice the
// CPU per call of the server under test and starved it of the second core (--grpc-client grpc-js
// to use it anyway; see bench/measure.ts).
//
// The figure: the app process's CPU time per request (user + system, from /proc/<pid>/stat), as
// plain / decorated (>= 0.952: the decorated branch costs at most 5 % more CPU per request), with
// requests per second beside it. Throughput on a shared 2-core machine moves with whatever else
// runs (the load generator included); the CPU the app spends per request much less. The apps
// (decorated and plain, per transport) all run all the time, started once and warmed up: started
// per round they would need a warm-up per round (JIT, connections), and an idle Node process costs
// nothing (but a process keeps its own bias of a few per cent, its heap layout and its JIT's
// choices, for its whole life: --fresh starts each app anew, and warms it up, before each of its
// rounds after the first, so that the bias is in one round, not in all; --aa gives the OTel pairs
// the same two apps, to check that the method then finds no difference). Each round measures every
// app once: per transport the decorated and the plain app back to back, the transports in turn;
// which transport and which app go first rotate from round to round. The ratios are taken per round (paired: the two runs of a pair are seconds apart), then
// summarised by their median, interquartile range and min–max.
// Target: plain / decorated CPU per request >= 0.952 (issue #18: the module's own share <= 5 %) on
// each transport: Express (http), Fastify (fastify) and gRPC.
//
// With --trace every request also carries a W3C traceparent, which the module passes on: it then
// enters its AsyncLocalStorage for each request, which on Node 20 slows every promise down.
//
// With --auth a third app per transport serves the decorated branch with authenticated branch
// calls (lynx.dtm.branch_auth_keys), and every request to it carries the tokens DTM would send for
// a two-step saga (the dtm-auth header / metadata, four entries, one for this call): the figure is
// then also authenticated / unauthenticated (target >= 0.90, issue #13).
//
// With --otel none,sdk,instrumented (any of them, or all; issue #16), more apps per transport:
//   - none: the decorated app (the default: the API installed, no SDK registered) against one with
//     the instrumentation off (`instrumentation: { openTelemetry: false }`): no measurable cost
//     (about 1);
//   - sdk: two apps with an OpenTelemetry SDK registered that records every span and metric and
//     exports them nowhere (bench/otel-sdk.ts), one with the module's instrumentation off, one with
//     it on: the figure is off / on app CPU per request (target >= 0.95). Nothing but the module
//     makes spans there: its branch span is the call's only one;
//   - instrumented: the same two, the SDK with its HTTP and gRPC instrumentations (registered with
//     `node --import` before the app loads, as apps do): a server span per call, which the module
//     gives its attributes instead of making a second span.
// With --trace as well, every call carries a traceparent, as DTM's calls of a traced transaction do.
// With --hand as well (and --trace), a third app per sdk / instrumented set: the module's
// instrumentation off, the handler giving each call by hand, with @opentelemetry/api, the least of
// the same telemetry (bench/branch-overhead.app.ts, byHand): off / by hand is what OpenTelemetry
// itself costs for it, by hand / on what the module's seam adds beyond that.
// With --otel-only, only those pairs run (not the decorated / plain pair): every app beside the two
// measured costs them CPU per request (caches, the SDK apps' export timers), as the figures show.
// --warmup S: each app's warm-up (at the start, and before each --fresh round) lasts S seconds (0: none).
//
//   npm run bench:branch -- [--transport all|http,fastify,grpc] [--connections 32] [--channels 1] [--grpc-client http2|grpc-js]
//                           [--seconds 5] [--rounds 10] [--warmup 3] [--env production] [--trace] [--auth] [--otel none,sdk,instrumented|all [--otel-only] [--aa] [--hand]] [--fresh]
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import protoLoader from '@grpc/proto-loader';
import { randomBytes } from 'node:crypto';
import { AUTH_ISSUED_HEADER, BranchAuth } from '../lib/auth/branch-auth.js';
import { freePort } from '../test/support/services/process.js';
import { BENCH_LOADER, BENCH_PROTO } from './bench-app.js';
import { closedLoopRun, postJson, startAppProcess, startTogether } from './load.js';
import { OTEL_PRELOAD } from './otel-sdk.js';
import {
  branchMetadata,
  cpuSeries,
  formatSpread,
  grpcCaller,
  grpcLoad,
  interleaved,
  metered,
  pairedRatios,
  spread,
  type GrpcClientKind,
  type Measured,
} from './measure.js';

const { values } = parseArgs({
  options: {
    transport: { type: 'string', default: 'all' },
    connections: { type: 'string', default: '32' },
    channels: { type: 'string', default: '1' },
    'grpc-client': { type: 'string', default: 'http2' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    env: { type: 'string', default: 'production' },
    trace: { type: 'boolean', default: false },
    auth: { type: 'boolean', default: false },
    otel: { type: 'string' },
    'otel-only': { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
    aa: { type: 'boolean', default: false },
    hand: { type: 'boolean', default: false },
  },
});
const connections = Number(values.connections);
const channelCount = Number(values.channels);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, not ${values.warmup}`);
const grpcClient = values['grpc-client'] as GrpcClientKind;
if (grpcClient !== 'http2' && grpcClient !== 'grpc-js') throw new Error(`--grpc-client: http2 or grpc-js, not ${grpcClient}`);
const ALL: Transport[] = ['http', 'fastify', 'grpc'];
const transports = values.transport === 'all' ? ALL : (values.transport!.split(',') as Transport[]);
if (transports.some((t) => !ALL.includes(t))) throw new Error(`--transport: all, or a list of http (Express), fastify, grpc; not ${values.transport}`);
/** http: Express; fastify: Nest's Fastify adapter; grpc: a gRPC microservice. */
type Transport = 'http' | 'fastify' | 'grpc';
type Mode = 'dtm' | 'plain' | 'auth' | 'off' | 'otel' | 'sdk-off' | 'inst' | 'inst-off' | 'sdk-hand' | 'inst-hand';
const OTEL_SETS = ['none', 'sdk', 'instrumented'] as const;
const otel = values.otel === 'all' ? [...OTEL_SETS] : (values.otel?.split(',') ?? []);
if (otel.some((o) => !(OTEL_SETS as readonly string[]).includes(o))) throw new Error(`--otel: all, or a list of none, sdk, instrumented; not ${values.otel}`);
/** The pairs of apps compared per `--otel` set: [instrumentation off, on]. */
const OTEL_PAIRS = { none: ['off', 'dtm'], sdk: ['sdk-off', 'otel'], instrumented: ['inst-off', 'inst'] } as const satisfies Record<(typeof OTEL_SETS)[number], readonly [Mode, Mode]>;
const OTEL_LABELS = { none: 'no SDK', sdk: 'SDK', instrumented: 'SDK + instrumentations' } as const;
/** --hand: the app per `--otel` set that gives each call the same telemetry by hand (none without an SDK). */
const OTEL_HAND = { none: undefined, sdk: 'sdk-hand', instrumented: 'inst-hand' } as const satisfies Record<(typeof OTEL_SETS)[number], Mode | undefined>;
if (values.hand && (!values.trace || !otel.some((o) => o !== 'none'))) throw new Error('--hand: with --trace and --otel sdk and/or instrumented');
const handOf = (o: string): Mode | undefined => (values.hand ? OTEL_HAND[o as keyof typeof OTEL_HAND] : undefined);
const otelModes: Mode[] = otel.flatMap((o) => [...OTEL_PAIRS[o as keyof typeof OTEL_PAIRS], ...(handOf(o) ? [handOf(o)!] : [])]);
// --otel-only: the OTel pairs alone (every app beside the pair measured costs it CPU per request: caches, timers)
const modes: Mode[] = values['otel-only'] ? [...new Set(otelModes)] : [...new Set<Mode>(['dtm', 'plain', ...(values.auth ? (['auth'] as const) : []), ...otelModes])];
if (values['otel-only'] && (values.auth || otel.length === 0)) throw new Error('--otel-only: with --otel, and without --auth');
/** Whether this run has the decorated / plain pair (not with --otel-only). */
const plainPair = modes.includes('plain');

const here = dirname(fileURLToPath(import.meta.url));
const order = { lines: [{ sku: 'a', amount: 3 }, { sku: 'b', amount: 4 }] };
const body = JSON.stringify(order);
const query = '?gid=BenchGid0000000000001&trans_type=saga&branch_id=01&op=action';
const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const headers: Record<string, string> = values.trace ? { traceparent } : {};
const GRPC_PATH = '/bench.BranchBench/Branch';
const orderBytes = (protoLoader.loadSync(BENCH_PROTO, BENCH_LOADER)['bench.BranchBench'] as unknown as Record<string, { requestSerialize(v: unknown): Buffer }>).Branch.requestSerialize(order);
const grpcRequest = { bytes: orderBytes, metadata: branchMetadata('BenchGid0000000000001', 'action', values.trace ? { traceparent } : {}) };

// --auth: the tokens a two-step saga stores in DTM, this call's among them, and their issue time (as DTM sends them on every call)
const AUTH_KEY = randomBytes(33).toString('base64');
const ISSUED = String(Math.floor(Date.now() / 1000));
function sagaTokens(path: string, payload: string | Uint8Array): string {
  const auth = new BranchAuth([AUTH_KEY]);
  const sign = (branchId: string, op: string, target: string) =>
    `${op}.${branchId}=${auth.sign({ channel: 'dtm', gid: 'BenchGid0000000000001', transType: 'saga', branchId, op, target, payload, issued: ISSUED })}`;
  return [sign('01', 'action', path), sign('01', 'compensate', `${path}-compensate`), sign('02', 'action', `${path}-2`), sign('02', 'compensate', `${path}-2-compensate`)].join(',');
}
const authHeaders = { ...headers, 'dtm-auth': sagaTokens('/bench/branch', body), [AUTH_ISSUED_HEADER]: ISSUED };
const authGrpcRequest = {
  bytes: orderBytes,
  metadata: branchMetadata('BenchGid0000000000001', 'action', { ...(values.trace ? { traceparent } : {}), 'dtm-auth': sagaTokens(GRPC_PATH, orderBytes), [AUTH_ISSUED_HEADER]: ISSUED }),
};

interface App {
  pid: number;
  /** Runs the transport's load on the app for `s` seconds. */
  load(s: number): Promise<{ completed: number; elapsedSeconds: number }>;
  close(): void;
}

async function startApp(transport: Transport, mode: Mode): Promise<App> {
  const env: Record<string, string> = { NODE_ENV: values.env!, BENCH_AUTH_KEY: AUTH_KEY, ...(values.aa ? { BENCH_AA: '1' } : {}) };
  if (transport === 'grpc') env.GRPC_PORT = String(await freePort());
  const preload = mode === 'inst' || mode === 'inst-off' || mode === 'inst-hand' ? OTEL_PRELOAD : [];
  const started = await startAppProcess([process.execPath, ...preload, join(here, 'branch-overhead.app.js'), mode, transport], env);
  const close = () => started.child.kill('SIGTERM');
  if (transport !== 'grpc') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
    return {
      pid: started.child.pid!,
      async load(s) {
        let bad = 0;
        const result = await closedLoopRun(connections, s, async () => {
          if ((await postJson(agent, started.port, `/bench/branch${query}`, body, mode === 'auth' ? authHeaders : headers)) !== 200) bad++;
        });
        if (bad > 0) throw new Error(`${bad} answers were not 200`);
        return result;
      },
      close: () => {
        agent.destroy();
        close();
      },
    };
  }
  const caller = grpcCaller(grpcClient, `127.0.0.1:${started.grpcPort}`, channelCount);
  return {
    pid: started.child.pid!,
    load: (s) => grpcLoad(caller, connections, s, GRPC_PATH, mode === 'auth' ? () => authGrpcRequest : () => grpcRequest),
    close: () => {
      caller.close();
      close();
    },
  };
}

const us = (x: number) => `${x.toFixed(0)} µs`;

async function main(): Promise<void> {
  console.log(
    `branch-overhead: ${transports.join(' and ')}, NODE_ENV=${values.env}, ${connections} ${transports.some((t) => t !== 'grpc') ? 'connections (HTTP) / ' : ''}` +
      `${transports.includes('grpc') ? `calls in flight on ${channelCount} connection${channelCount > 1 ? 's' : ''} (gRPC, ${grpcClient} client), ` : ''}` +
      `${rounds} rounds of ${seconds} s, interleaved, rotating start${values.trace ? ', traceparent on every request' : ''}${values.auth ? ', with an authenticated-calls app' : ''}` +
      `${otel.length ? `, instrumentation off and on: ${otel.map((o) => OTEL_LABELS[o as keyof typeof OTEL_LABELS]).join(', ')}` : ''}`,
  );
  const keys = transports.flatMap((t) => modes.map((m) => `${t}:${m}` as const));
  const apps = {} as Record<(typeof keys)[number], App>;
  try {
    await startTogether(
      keys.map((key) => () => startApp(...(key.split(':') as [Transport, Mode]))),
      (app, i) => (apps[keys[i]] = app),
    );
    if (warmup > 0) for (const key of keys) await apps[key].load(warmup); // warm-up: JIT, connections
    // each round: the transports in turn, and per transport its decorated and plain app back to back
    // (a pair measured seconds apart); which transport and which app go first rotate over the rounds
    const schedule = (round: number) => {
      const ts = round % 2 === 0 ? transports : [...transports].reverse();
      const turn = Math.floor(round / transports.length) % modes.length;
      const sequence = [...modes.slice(turn), ...modes.slice(0, turn)];
      return ts.flatMap((t) => sequence.map((m) => `${t}:${m}` as const));
    };
    // --fresh: from the second round on, each app is started anew (and warmed up) just before it is
    // measured, so that no process's own bias (its heap layout, its JIT's choices) is in every round
    const measure = async (key: (typeof keys)[number], round: number) => {
      if (values.fresh && round > 0) {
        const [t, m] = key.split(':') as [Transport, Mode];
        apps[key].close();
        apps[key] = await startApp(t, m);
        if (warmup > 0) await apps[key].load(warmup);
      }
      return metered(apps[key].pid, () => apps[key].load(seconds));
    };
    const results = await interleaved(keys, rounds, measure, schedule);
    // per-round lines, then the summary side by side
    if (plainPair) console.log('per round: requests/s decorated vs plain, the app\'s CPU per request decorated vs plain (plain / decorated)');
    for (let i = 0; i < rounds && plainPair; i++) {
      const cells = transports.map((t) => {
        const [d, p] = [results[`${t}:dtm`][i], results[`${t}:plain`][i]];
        const cpu = d.cpuPerCall !== undefined && p.cpuPerCall !== undefined ? `, CPU ${us(d.cpuPerCall)} vs ${us(p.cpuPerCall)} (${(p.cpuPerCall / d.cpuPerCall).toFixed(3)})` : '';
        return `${t} ${d.rate.toFixed(0)} vs ${p.rate.toFixed(0)}/s${cpu}`.padEnd(52);
      });
      console.log(`  round ${String(i + 1).padStart(2)}: ${cells.join(' | ')}`);
    }
    const of = (t: Transport, m: Mode): Measured[] => results[`${t}:${m}`];
    const rate = (t: Transport, m: Mode) => of(t, m).map((r) => r.rate);
    const rows: [string, (t: Transport) => string][] = [
      ...(plainPair
        ? ([
            ['decorated: app CPU per request', (t) => fmtSeries(cpuSeries(of(t, 'dtm')), ' µs')],
            ['plain: app CPU per request', (t) => fmtSeries(cpuSeries(of(t, 'plain')), ' µs')],
            ['decorated: requests/s', (t) => fmtSeries(rate(t, 'dtm'), '/s')],
            ['plain: requests/s', (t) => fmtSeries(rate(t, 'plain'), '/s')],
          ] as [string, (t: Transport) => string][])
        : []),
      ...(values.auth
        ? ([
            ['authenticated: app CPU per request', (t) => fmtSeries(cpuSeries(of(t, 'auth')), ' µs')],
            ['authenticated: requests/s', (t) => fmtSeries(rate(t, 'auth'), '/s')],
          ] as [string, (t: Transport) => string][])
        : []),
      ...otel.flatMap((o) => {
        const [off, on] = OTEL_PAIRS[o as keyof typeof OTEL_PAIRS];
        const label = OTEL_LABELS[o as keyof typeof OTEL_LABELS];
        const hand = handOf(o);
        return [
          [`${label}, off: app CPU per request`, (t: Transport) => fmtSeries(cpuSeries(of(t, off)), ' µs')],
          [`${label}, on: app CPU per request`, (t: Transport) => fmtSeries(cpuSeries(of(t, on)), ' µs')],
          ...(hand ? [[`${label}, by hand: app CPU per request`, (t: Transport) => fmtSeries(cpuSeries(of(t, hand)), ' µs')]] : []),
        ] as [string, (t: Transport) => string][];
      }),
      ['load generator CPU per request', (t) => modes.map((m) => us(spread(of(t, m).map((r) => r.ownCpuPerCall)).median)).join(' / ')],
    ];
    console.log(`\nmedians (min–max) over ${rounds} rounds`.padEnd(56) + transports.map((t) => t.padEnd(30)).join(''));
    for (const [label, cell] of rows) console.log(`  ${label.padEnd(54)}${transports.map((t) => cell(t).padEnd(30)).join('')}`);
    console.log('\npaired per-round ratios: median (IQR, min–max)');
    for (const t of transports) {
      const [d, p] = plainPair ? [cpuSeries(of(t, 'dtm')), cpuSeries(of(t, 'plain'))] : [];
      if (d && p) {
        const ratio = spread(pairedRatios(p, d));
        console.log(`  ${t.padEnd(4)} plain / decorated app CPU per request = ${formatSpread(ratio)}   target >= 0.952: ${ratio.median >= 1 / 1.05 ? 'met' : 'MISSED'}`);
      }
      if (plainPair) console.log(`  ${t.padEnd(4)} decorated / plain requests/s         = ${formatSpread(spread(pairedRatios(rate(t, 'dtm'), rate(t, 'plain'))))}`);
      if (values.auth) {
        const a = cpuSeries(of(t, 'auth'));
        if (d && a) {
          const ratio = spread(pairedRatios(d, a));
          console.log(`  ${t.padEnd(4)} unauthenticated / authenticated app CPU per request = ${formatSpread(ratio)}   target >= 0.90: ${ratio.median >= 0.9 ? 'met' : 'MISSED'}`);
        }
        console.log(`  ${t.padEnd(4)} authenticated / unauthenticated requests/s         = ${formatSpread(spread(pairedRatios(rate(t, 'auth'), rate(t, 'dtm'))))}`);
      }
      for (const o of otel) {
        const [offMode, onMode] = OTEL_PAIRS[o as keyof typeof OTEL_PAIRS];
        const label = OTEL_LABELS[o as keyof typeof OTEL_LABELS];
        const [off, on] = [cpuSeries(of(t, offMode)), cpuSeries(of(t, onMode))];
        if (off && on) {
          const ratio = spread(pairedRatios(off, on));
          const verdict = o === 'none' ? '(no measurable cost: about 1)' : `target >= 0.95: ${ratio.median >= 0.95 ? 'met' : 'MISSED'}`;
          console.log(`  ${t.padEnd(4)} ${label}: instrumentation off / on app CPU per request = ${formatSpread(ratio)}   ${verdict}`);
        }
        console.log(`  ${t.padEnd(4)} ${label}: instrumentation on / off requests/s         = ${formatSpread(spread(pairedRatios(rate(t, onMode), rate(t, offMode))))}`);
        const handMode = handOf(o);
        const hand = handMode && cpuSeries(of(t, handMode));
        if (off && on && hand) {
          console.log(`  ${t.padEnd(4)} ${label}: off / by hand app CPU per request (OpenTelemetry's own cost)  = ${formatSpread(spread(pairedRatios(off, hand)))}`);
          console.log(`  ${t.padEnd(4)} ${label}: by hand / on app CPU per request (the module's seam beyond it) = ${formatSpread(spread(pairedRatios(hand, on)))}`);
        }
      }
    }
  } finally {
    for (const app of Object.values(apps)) app.close();
  }
}

/** `median unit (min–max)` of a series, or `—` without /proc. */
function fmtSeries(xs: number[] | undefined, unit: string): string {
  if (!xs) return '—';
  const s = spread(xs);
  return `${s.median.toFixed(0)}${unit} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
