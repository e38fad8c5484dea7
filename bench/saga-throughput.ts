// bench/saga-throughput: what DtmClient costs the app that starts sagas, over HTTP and over gRPC,
// against the same calls written by hand, through the real DTM server (Redis store).
//
// Each driver (bench/saga-drivers.ts) runs the same two-step saga with wait_result from N concurrent
// callers, for `--seconds` per round, each in a caller process of its own (bench/saga-caller.ts):
//   HTTP: DtmClient (protocol http) vs by hand with axios set up as an app would for DTM (the
//         product's HTTP client); bare node:http for reference (it also counts axios's own cost);
//   gRPC: DtmClient (protocol grpc) vs by hand with @grpc/grpc-js and DTM's proto parsed by protobufjs.
// A saga counts when submit succeeded: with wait_result DTM answers after its first round, and only
// with success if both steps succeeded. The branches are a bare node:http server in a child process
// (bench/saga-branches.ts), http:// steps for every driver, gRPC ones included (DTM calls http://
// steps of a gRPC saga over HTTP), so that every driver's branches do the same work.
//
// Primary figure: the caller's CPU time per completed saga (process.cpuUsage of the caller process,
// which runs nothing but that driver's callers), hand-written / library: >= 0.95 means the library
// costs at most ~5 % more CPU than the same calls written by hand. Beside it, completed sagas per
// second, library / hand-written. Both are taken as paired per-round ratios (all drivers run in every
// round, one at a time, each round starting with the next driver) and reported as the median with
// the IQR and min–max. The branch process's and DTM's (+ Redis's) CPU per saga are printed too (they
// should not depend on the driver, beyond the protocol).
//
// One process per driver, because drivers sharing a process charge each other: the garbage one
// leaves is collected during the next one's round, and code shared by two drivers (the transaction
// core by both DtmClient drivers, axios, grpc-js) is compiled for both.
//
// With --auth, one more driver per protocol: DtmClient with authenticated branch calls
// (lynx.dtm.branch_auth_keys), compared with DtmClient without (target >= 0.95, issue #13).
//
// With --otel none,sdk,instrumented (any of them, or all), more drivers per protocol (issue #16):
//   - none: DtmClient with its instrumentation off (`instrumentation: { openTelemetry: false }`),
//     against the plain DtmClient driver, the default (the API installed, no SDK registered): no
//     measurable cost;
//   - sdk: in processes with an OpenTelemetry SDK registered that records every span and metric and
//     exports them nowhere (bench/otel-sdk.ts), DtmClient with its instrumentation off and on;
//   - instrumented: the same, the SDK with its HTTP and gRPC instrumentations, as NodeSDK's
//     auto-instrumentations give an app (a client span per call to DTM).
//   Figures with an SDK: off / on (target >= 0.95).
//   With --hand, one more driver per SDK setting: the instrumentation off, the saga's telemetry
//   written by hand with @opentelemetry/api (bench/saga-drivers.ts): off / by hand is what
//   OpenTelemetry itself costs for it, by hand / on what the module's seam adds beyond that.
//
// With --fresh, every driver gets a new caller process (warmed up for --warmup s) before each round after the
// first: two processes running the same code differ by a few per cent for their whole life (heap
// layout, the JIT's choices), which a run with one process per driver carries into every round.
// --warmup S: each of the two warm-up passes (and a fresh process's warm-up) lasts S seconds (0: none).
//
//   npm run bench:saga -- [--protocol http|grpc|both] [--callers 16] [--seconds 8] [--rounds 10] [--warmup 4] [--auth] [--otel none,sdk,instrumented|all [--hand]] [--fresh]
import 'reflect-metadata';
import { dirname, join } from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchStack, stackLabel } from './bench-stack.js';
import { processCpuMicros, quantile, startAppProcess, startTogether } from './load.js';
import { OTEL_PRELOAD } from './otel-sdk.js';
import { AUTH_DRIVERS, DRIVERS, OTEL_DRIVERS, PRELOADED_ROLES, type Protocol, type SagaDriver, type SagaEndpoints } from './saga-drivers.js';

const { values } = parseArgs({
  options: {
    protocol: { type: 'string', default: 'both' },
    callers: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '4' },
    auth: { type: 'boolean', default: false },
    otel: { type: 'string' },
    hand: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
  },
});
if (!['http', 'grpc', 'both'].includes(values.protocol!)) throw new Error(`--protocol must be http, grpc or both, not ${values.protocol}`);
const protocols: Protocol[] = values.protocol === 'both' ? ['http', 'grpc'] : [values.protocol as Protocol];
const OTEL_SETS = ['none', 'sdk', 'instrumented'] as const;
const otel = values.otel === 'all' ? [...OTEL_SETS] : (values.otel?.split(',') ?? []);
if (otel.some((o) => !(OTEL_SETS as readonly string[]).includes(o))) throw new Error(`--otel: all, or a list of none, sdk, instrumented; not ${values.otel}`);
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, not ${values.warmup}`);
const here = dirname(fileURLToPath(import.meta.url));
const TARGET = 0.95;

/** One driver's figures for one round. */
interface Sample {
  /** Completed sagas per second. */
  rate: number;
  /** The caller process's CPU time per saga, µs. */
  cpu: number;
  /** The branch process's CPU time per saga, µs (NaN without /proc). */
  branchCpu: number;
  /** DTM's and Redis's CPU time per saga, µs (NaN without /proc). */
  serverCpu: number;
}

/** CPU time of processes `pids` so far (µs), NaN where it cannot be read (or no process is given: the harness's shared servers). */
const cpuOf = (pids: number[]) => (pids.length === 0 ? Number.NaN : pids.reduce((sum, pid) => sum + (processCpuMicros(pid) ?? Number.NaN), 0));

/** A driver of {@link DRIVERS} in its caller process. */
interface Caller {
  protocol: Protocol;
  role: SagaDriver['role'];
  name: string;
  child: ChildProcess;
}

/** Starts the caller process of `driver`; resolves once its driver is made. */
function startCaller(driver: (typeof DRIVERS)[number], endpoints: SagaEndpoints): Promise<Caller> {
  const child = fork(join(here, 'saga-caller.js'), [driver.protocol, driver.role, endpoints.serverUrl, endpoints.grpcAddress, endpoints.branchUrl, String(callers)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // e.g. --cpu-prof, as bench/load.ts gives the apps; the SDK with its instrumentations before the caller loads
    execArgv: [...process.execArgv, ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...(PRELOADED_ROLES.includes(driver.role) ? OTEL_PRELOAD : [])],
  });
  return new Promise((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`caller ${driver.protocol} ${driver.name} exited with ${code}`));
    child.once('exit', exited);
    child.once('message', () => {
      child.off('exit', exited);
      resolve({ ...driver, child });
    });
  });
}

/** Has the caller process `child` close its driver and exit. */
async function stopCaller(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.send({ close: true });
  await exited;
}

/** Has `caller` run its driver for `durationSeconds`, measuring the branch process and DTM meanwhile. */
async function measure(caller: Caller, durationSeconds: number, branchPid: number, serverPids: number[]): Promise<Sample> {
  const branchBefore = cpuOf([branchPid]);
  const serverBefore = cpuOf(serverPids);
  const answer = await new Promise<{ completed: number; elapsedSeconds: number; cpuMicros: number; error?: string }>((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`caller ${caller.protocol} ${caller.name} exited with ${code}`));
    caller.child.once('exit', exited);
    caller.child.once('message', (message: { completed: number; elapsedSeconds: number; cpuMicros: number; error?: string }) => {
      caller.child.off('exit', exited);
      resolve(message);
    });
    caller.child.send({ run: durationSeconds });
  });
  if (answer.error) throw new Error(`${caller.protocol} ${caller.name}: ${answer.error}`);
  const sagas = answer.completed;
  return {
    rate: sagas / answer.elapsedSeconds,
    cpu: answer.cpuMicros / sagas,
    branchCpu: (cpuOf([branchPid]) - branchBefore) / sagas,
    serverCpu: (cpuOf(serverPids) - serverBefore) / sagas,
  };
}

const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
/** `median [min–max]` of `xs`. */
const range = (xs: number[], digits = 0) => `${fmt(quantile(xs, 0.5), digits)} [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}]`;
/** `median [IQR q1–q3; min–max]` of `xs`. */
const spread = (xs: number[]) =>
  `${fmt(quantile(xs, 0.5), 3)}  [IQR ${fmt(quantile(xs, 0.25), 3)}–${fmt(quantile(xs, 0.75), 3)}; min–max ${fmt(Math.min(...xs), 3)}–${fmt(Math.max(...xs), 3)}]`;
const label = (p: Protocol) => (p === 'http' ? 'HTTP' : 'gRPC');

async function main(): Promise<void> {
  const stack = await benchStack({ dtmStore: 'redis', postgres: false, mariadb: false });
  let branches: Awaited<ReturnType<typeof startAppProcess>> | undefined;
  const drivers: Caller[] = [];
  try {
    branches = await startAppProcess([process.execPath, join(here, 'saga-branches.js')], {});
    const dtm = stack.info.dtm!;
    const endpoints = { serverUrl: dtm.serverUrl, grpcAddress: dtm.grpcAddress, branchUrl: `http://127.0.0.1:${branches.port}` };
    const chosen = [...DRIVERS, ...(values.auth ? AUTH_DRIVERS : []), ...OTEL_DRIVERS.filter((d) => otel.includes(d.otel) && (values.hand || !d.role.endsWith('-hand')))].filter((d) => protocols.includes(d.protocol));
    await startTogether(
      chosen.map((driver) => () => startCaller(driver, endpoints)),
      (caller) => drivers.push(caller),
    );
    const branchPid = branches.child.pid!;
    const serverPids = stack.processes.map((p) => p.pid);
    const samples = new Map<Caller, Sample[]>(drivers.map((d) => [d, []]));
    const name = (d: Caller) => `${label(d.protocol)} ${d.name}`;

    console.log(
      `saga-throughput: DTM ${dtm.version} (${dtm.store} store, ${stackLabel(stack)}), ${protocols.map(label).join(' and ')}, ${callers} callers, ` +
        `${rounds} rounds of ${seconds} s per driver, drivers in turn, each round starting with the next; ` +
        'each driver in a caller process of its own; branches: node:http in a child process',
    );
    // warm-up, twice over: connections, JIT, heap sizes, DTM's Redis scripts
    for (let pass = 0; pass < 2 && warmup > 0; pass++) for (const d of drivers) await measure(d, warmup, branchPid, serverPids);
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < drivers.length; k++) {
        const d = drivers[(i + k) % drivers.length];
        if (values.fresh && i > 0) {
          // --fresh: a new caller process, warmed up, for every round after the first (no process's own bias in every round)
          await stopCaller(d.child);
          d.child = (await startCaller(d, endpoints)).child;
          if (warmup > 0) await measure(d, warmup, branchPid, serverPids);
        }
        samples.get(d)!.push(await measure(d, seconds, branchPid, serverPids));
      }
      console.log(`  round ${String(i + 1).padStart(2)}: ${drivers.map((d) => `${name(d)} ${fmt(samples.get(d)![i].rate)}/s ${fmt(samples.get(d)![i].cpu)} µs`).join(' | ')}`);
    }

    // per driver: median [min–max] over the rounds
    console.log(`\nper driver, median [min–max] over ${rounds} rounds; CPU times per completed saga:`);
    console.log(`  ${'driver'.padEnd(34)} ${'caller CPU µs'.padEnd(20)} ${'sagas/s'.padEnd(20)} ${'branches CPU µs'.padEnd(20)} DTM + Redis CPU µs`);
    for (const d of drivers) {
      const s = samples.get(d)!;
      const cols = [range(s.map((x) => x.cpu)), range(s.map((x) => x.rate)), range(s.map((x) => x.branchCpu)), range(s.map((x) => x.serverCpu))];
      console.log(`  ${`${name(d)}${d.role === 'reference' ? ' (reference)' : ''}`.padEnd(34)} ${cols.map((c) => c.padEnd(20)).join(' ')}`);
    }

    // the targets, one column per protocol: ratios paired within each round
    const of = (protocol: Protocol, role: Caller['role']) => samples.get(drivers.find((d) => d.protocol === protocol && d.role === role)!)!;
    const cpuRatios = (p: Protocol) => of(p, 'library').map((s, i) => of(p, 'hand')[i].cpu / s.cpu);
    const rateRatios = (p: Protocol) => of(p, 'library').map((s, i) => s.rate / of(p, 'hand')[i].rate);
    const verdict = (xs: number[]) => `${fmt(quantile(xs, 0.5), 3)} ${quantile(xs, 0.5) >= TARGET ? 'met' : 'NOT MET'}`;
    const width = 46;
    const row = (title: string, cell: (p: Protocol) => string) => console.log(`  ${title.padEnd(40)} ${protocols.map((p) => cell(p).padEnd(width)).join(' ')}`);
    console.log(`\nsummary, median [min–max] (ratios: median [IQR; min–max] of the rounds' paired ratios)`);
    row('', (p) => `---- ${label(p)} `.padEnd(width, '-'));
    row('caller CPU µs per saga, DtmClient', (p) => range(of(p, 'library').map((x) => x.cpu)));
    row('caller CPU µs per saga, by hand', (p) => `${range(of(p, 'hand').map((x) => x.cpu))} (${drivers.find((d) => d.protocol === p && d.role === 'hand')!.name.replace('by hand, ', '')})`);
    row('  by hand / DtmClient', (p) => spread(cpuRatios(p)));
    row('sagas/s, DtmClient', (p) => range(of(p, 'library').map((x) => x.rate)));
    row('sagas/s, by hand', (p) => range(of(p, 'hand').map((x) => x.rate)));
    row('  DtmClient / by hand', (p) => spread(rateRatios(p)));
    row('branches + DTM + Redis CPU µs, DtmClient', (p) => range(of(p, 'library').map((x) => x.branchCpu + x.serverCpu)));
    row('branches + DTM + Redis CPU µs, by hand', (p) => range(of(p, 'hand').map((x) => x.branchCpu + x.serverCpu)));
    console.log('\ntargets (medians of the paired ratios):');
    for (const p of protocols) {
      console.log(`  ${label(p)} caller CPU per saga, by hand / DtmClient >= ${TARGET}: ${verdict(cpuRatios(p))}`);
      console.log(`  ${label(p)} throughput, DtmClient / by hand >= ${TARGET}:          ${verdict(rateRatios(p))}`);
    }
    if (values.auth) {
      for (const p of protocols) {
        const cpu = of(p, 'library').map((s, i) => s.cpu / of(p, 'auth')[i].cpu);
        const rate = of(p, 'library').map((s, i) => of(p, 'auth')[i].rate / s.rate);
        console.log(`  ${label(p)} authenticated calls: caller CPU per saga, off / on = ${spread(cpu)}; sagas/s, on / off >= ${TARGET}: ${verdict(rate)}`);
      }
    }
    for (const p of protocols) {
      const withSdk = (set: string, offRole: SagaDriver['role'], onRole: SagaDriver['role'], handRole: SagaDriver['role']) => {
        const [off, on] = [of(p, offRole), of(p, onRole)];
        const cpu = off.map((s, i) => s.cpu / on[i].cpu);
        const rate = on.map((s, i) => s.rate / off[i].rate);
        console.log(`  ${label(p)} ${set}: caller CPU per saga, instrumentation off / on >= ${TARGET}: ${verdict(cpu)} [${spread(cpu)}]; sagas/s, on / off >= ${TARGET}: ${verdict(rate)}`);
        if (!values.hand) return;
        const hand = of(p, handRole);
        console.log(`  ${label(p)} ${set}: caller CPU per saga, off / by hand (OpenTelemetry's own cost) = ${spread(off.map((s, i) => s.cpu / hand[i].cpu))}`);
        console.log(`  ${label(p)} ${set}: caller CPU per saga, by hand / on (the module's seam beyond it) = ${spread(hand.map((s, i) => s.cpu / on[i].cpu))}`);
      };
      if (otel.includes('sdk')) withSdk('OTel SDK', 'otel-sdk-off', 'otel-sdk', 'otel-sdk-hand');
      if (otel.includes('instrumented')) withSdk('OTel SDK + HTTP/gRPC instrumentations', 'otel-inst-off', 'otel-inst', 'otel-inst-hand');
      if (otel.includes('none')) {
        const [off, none] = [of(p, 'otel-off'), of(p, 'library')];
        console.log(`  ${label(p)} no SDK registered: caller CPU per saga, off / no SDK = ${spread(off.map((s, i) => s.cpu / none[i].cpu))}; sagas/s, no SDK / off = ${spread(none.map((s, i) => s.rate / off[i].rate))}`);
      }
    }
    if (protocols.includes('http')) {
      const [lib, bare] = [of('http', 'library'), of('http', 'reference')];
      console.log(
        `  (reference, no target) HTTP bare node:http / DtmClient: CPU ${fmt(quantile(lib.map((s, i) => bare[i].cpu / s.cpu), 0.5), 3)}, ` +
          `throughput DtmClient / node:http ${fmt(quantile(lib.map((s, i) => s.rate / bare[i].rate), 0.5), 3)} (axios's own cost included)`,
      );
    }
  } finally {
    for (const { child } of drivers) await stopCaller(child);
    if (branches) {
      const { child } = branches;
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    }
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
