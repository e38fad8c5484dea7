// Every benchmark of bench/ stays runnable: nothing else in CI runs them, so a renamed export, a
// changed option or a broken figure would rot unseen until someone measures. Each benchmark runs
// once, compiled (scripts/run-jest.mjs's type check writes .build/bench/), in the smallest run that
// still takes its transports and modes (a fraction of a second per measurement, one round, no
// warm-up), against the harness's DTM server and databases (BENCH_HARNESS, BENCH_DATABASE:
// bench/bench-stack.ts) instead of servers of its own. Each must exit 0 and print its figures:
// every line it is meant to print, with numbers where its figures are. No speed nor ratio is
// asserted: speed targets live in the benchmarks (bench/README.md), never in timed tests.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from '@jest/globals';
import { fileDatabases } from '../support/databases.js';
import { HARNESS_ENV, harness } from '../support/harness.js';
import { runDirFrom } from '../support/services/process.js';

const root = resolve(import.meta.dirname, '..', '..');

/** What a benchmark's run left: its exit code and what it printed. */
interface BenchRun {
  /** The benchmark and its arguments, as a failure names them. */
  command: string[];
  code: number | string | null;
  /** How long it ran, s. */
  seconds: number;
  /** How long it ran after its last output, s. */
  exitSeconds: number;
  /** Whether it was killed at {@link RUN_TIMEOUT_MS}. */
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * How long a benchmark's run may take before its process group is killed: a run takes 2 to 15 s alone, and took up to
 * 64 s at a load of 35 on 2 cores (saga-throughput, whose 14 processes start at once); only a run that hangs comes near it.
 */
const RUN_TIMEOUT_MS = 170_000;

/**
 * How long a run may go on after its last output (its figures) before it exits, its apps and callers closing: less
 * than the 90 s for which DTM keeps an idle connection, so that an app whose close waits for DTM to let it go fails
 * here, whatever the load (a run's length is no measure of that: under load its measurements take longer too).
 */
const EXIT_AFTER_OUTPUT_MS = 60_000;

/** jest's timeout for a test of one run (its database created first). */
const ONE_RUN_MS = RUN_TIMEOUT_MS + 20_000;
/** jest's timeout for a test of two runs. */
const TWO_RUNS_MS = 2 * RUN_TIMEOUT_MS + 30_000;

/**
 * Runs `.build/bench/<name>.js` (compiled by scripts/run-jest.mjs before jest starts) with `args` on
 * the harness's servers (and, with `database`, that database to fill), in a process group of its
 * own that the harness's reaper knows; its group is killed once it has exited (an app it left
 * behind) or after {@link RUN_TIMEOUT_MS}.
 */
async function runBench(name: string, args: string[], options: { database?: string } = {}): Promise<BenchRun> {
  const script = join(root, '.build', 'bench', `${name}.js`);
  const env = { ...process.env, BENCH_HARNESS: process.env[HARNESS_ENV]!, ...(options.database ? { BENCH_DATABASE: options.database } : {}) };
  const child = spawn(process.execPath, [script, ...args], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  appendFileSync(runDirFrom(harness().runDir).pgidFile, `${child.pid}\n`);
  let stdout = '';
  let stderr = '';
  let lastOutput = performance.now();
  // as text decoded across chunks: a slow reader gets a chunk that ends inside a character (µ, –), which toString() of each chunk garbles
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    lastOutput = performance.now();
  });
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
    lastOutput = performance.now();
  });
  const killGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // the group is gone
    }
  };
  const closed = new Promise((done) => child.once('close', done));
  const started = performance.now();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, RUN_TIMEOUT_MS);
  try {
    const code = await new Promise<number | string | null>((done) => child.once('exit', (exitCode, signal) => done(exitCode ?? signal)));
    const exited = performance.now();
    const seconds = (exited - started) / 1000;
    const exitSeconds = (exited - lastOutput) / 1000;
    killGroup(); // an app it left closing holds its output open
    await closed;
    return { command: [name, ...args], code, seconds, exitSeconds, timedOut, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** A number as the benchmarks print it (a NaN or an unread figure prints `–`, which this does not match). */
const N = String.raw`(\d+(?:\.\d+)?)`;

/**
 * Fails the test when `problems` are found in `run`. The error's first lines (what a CI report's line per failed test
 * shows) name the benchmark, its exit code, how long it ran, the first problem and the last line of its stderr; then
 * come every problem, its command line, the last lines of its stderr and its whole stdout.
 */
function failOn(run: BenchRun, problems: string[]): void {
  if (problems.length === 0) return;
  const stderrLines = run.stderr.trimEnd().split('\n');
  const killed = run.timedOut ? ` (killed at ${RUN_TIMEOUT_MS / 1000} s)` : '';
  throw new Error(
    `${run.command[0]}: exit ${run.code} after ${run.seconds.toFixed(1)} s${killed}; ${problems.length} problem(s), the first: ${problems[0].slice(0, 160)}\n` +
      `its stderr's last line: ${stderrLines.at(-1)?.slice(0, 160) || '(none)'}\n` +
      `--- problems ---\n${problems.join('\n')}\n--- command ---\n${run.command.join(' ')}\n` +
      `--- its stderr, last lines ---\n${stderrLines.slice(-40).join('\n')}\n--- its stdout ---\n${run.stdout}`,
  );
}

/**
 * Asserts that `run` exited 0 and printed, for each regular expression (source) of `lines`, exactly
 * one line matching it whole, and nowhere NaN, Infinity or undefined. Shows the whole output on a failure.
 */
function expectFigures(run: BenchRun, lines: string[]): void {
  const printed = run.stdout.split('\n');
  const problems: string[] = [];
  for (const source of lines) {
    const count = printed.filter((line) => new RegExp(`^${source}$`).test(line)).length;
    if (count !== 1) problems.push(`${count} lines (not 1) match /^${source}$/`);
  }
  problems.push(...printed.filter((line) => /NaN|Infinity|undefined/.test(line)).map((line) => `a line prints NaN, Infinity or undefined: ${line.trim()}`));
  if (run.exitSeconds * 1000 > EXIT_AFTER_OUTPUT_MS) problems.unshift(`it exited ${run.exitSeconds.toFixed(1)} s after its last output (an app's close waiting for a connection DTM keeps: 90 s)`);
  failOn(run, run.code === 0 ? problems : ['exit code not 0', ...problems]);
}

/** `text` as a regular expression source matching it literally. */
const lit = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** `median [min–max]` of saga-throughput's and workflow-throughput's tables. */
const range = String.raw`${N} \[${N}–${N}\]`;
/** `median (IQR q1–q3, min–max a–b)` of bench/measure.ts's formatSpread. */
const spreadOf = String.raw`${N} \(IQR ${N}–${N}, min–max ${N}–${N}\)`;
/** `median  [IQR q1–q3; min–max a–b]` of saga-throughput's summary. */
const sagaSpread = String.raw`${N}  \[IQR ${N}–${N}; min–max ${N}–${N}\]`;
/** The header's words for the harness's servers (bench/bench-stack.ts's stackLabel). */
const SHARED = lit("the test harness's servers (shared: a smoke run, not a measurement)");

/** `HTTP` / `gRPC`: how saga-throughput and xa-throughput name a protocol. */
const PROTOCOLS = ['HTTP', 'gRPC'];

describe("every benchmark of bench/ runs (a smoke run of each on the harness's servers: exit 0, its figures printed; no speed asserted)", () => {
  it('saga-throughput: HTTP and gRPC, DtmClient, by hand, the reference, authenticated calls, OpenTelemetry (SDK with instrumentations, off, on, by hand)', async () => {
    const run = await runBench('saga-throughput', ['--protocol', 'both', '--auth', '--otel', 'instrumented', '--hand', '--callers', '2', '--seconds', '0.2', '--rounds', '1', '--warmup', '0']);
    const set = 'OTel SDK + HTTP/gRPC instrumentations';
    const library = ['DtmClient', 'DtmClient, authenticated', ...['instrumentation off', 'instrumentation on', 'telemetry by hand'].map((what) => `DtmClient, ${set}, ${what}`)];
    const drivers = [...PROTOCOLS.flatMap((p) => library.map((d) => `${p} ${d}`)), 'HTTP by hand, axios', 'HTTP by hand, node:http (reference)', 'gRPC by hand, grpc-js'];
    expectFigures(run, [
      String.raw`saga-throughput: DTM v1\.19\.0 \(\w+ store, ${SHARED}\), HTTP and gRPC, 2 callers, 1 rounds of 0\.2 s per driver, .*`,
      String.raw`  round  1: ${drivers.map(() => String.raw`(?:HTTP|gRPC) [^|]+ ${N}/s ${N} µs`).join(String.raw` \| `)}`,
      // per driver: the caller's CPU, sagas/s, the branches' CPU; DTM's (shared with the tests) is not read
      ...drivers.map((driver) => String.raw`  ${lit(driver)} +${range} +${range} +${range} +– \[–––\] *`),
      String.raw`  caller CPU µs per saga, DtmClient +${range} +${range} *`,
      String.raw`  caller CPU µs per saga, by hand +${range} \(axios\) +${range} \(grpc-js\) *`,
      String.raw`    by hand / DtmClient +${sagaSpread} +${sagaSpread} *`,
      String.raw`  sagas/s, DtmClient +${range} +${range} *`,
      String.raw`  sagas/s, by hand +${range} +${range} *`,
      String.raw`    DtmClient / by hand +${sagaSpread} +${sagaSpread} *`,
      ...PROTOCOLS.flatMap((p) => [
        String.raw`  ${p} caller CPU per saga, by hand / DtmClient >= 0\.95: ${N} (?:met|NOT MET)`,
        String.raw`  ${p} throughput, DtmClient / by hand >= 0\.95: +${N} (?:met|NOT MET)`,
        String.raw`  ${p} authenticated calls: caller CPU per saga, off / on = ${sagaSpread}; sagas/s, on / off >= 0\.95: ${N} (?:met|NOT MET)`,
        String.raw`  ${p} ${lit(set)}: caller CPU per saga, instrumentation off / on >= 0\.95: ${N} (?:met|NOT MET) \[${sagaSpread}\]; sagas/s, on / off >= 0\.95: ${N} (?:met|NOT MET)`,
        String.raw`  ${p} ${lit(set)}: caller CPU per saga, off / by hand \(OpenTelemetry's own cost\) = ${sagaSpread}`,
        String.raw`  ${p} ${lit(set)}: caller CPU per saga, by hand / on \(the module's seam beyond it\) = ${sagaSpread}`,
      ]),
      String.raw`  \(reference, no target\) HTTP bare node:http / DtmClient: CPU ${N}, throughput DtmClient / node:http ${N} \(axios's own cost included\)`,
    ]);
  }, ONE_RUN_MS);

  it('branch-overhead: Express, Fastify and gRPC, decorated, plain and authenticated apps; OpenTelemetry (SDK with instrumentations, off, on, by hand) on gRPC', async () => {
    const load = ['--connections', '4', '--seconds', '0.3', '--rounds', '1', '--warmup', '0'];
    const transports = ['http', 'fastify', 'grpc'];
    const cell = (unit: string) => String.raw`${N}${unit} \(${N}–${N}\) *`;
    const row = (label: string, unit: string, cells = 3) => String.raw`  ${lit(label)} +${cell(unit).repeat(cells)}`;
    const run = await runBench('branch-overhead', ['--transport', 'all', '--auth', ...load]);
    expectFigures(run, [
      String.raw`branch-overhead: http and fastify and grpc, NODE_ENV=production, 4 connections \(HTTP\) / calls in flight on 1 connection \(gRPC, http2 client\), 1 rounds of 0\.3 s, .*, with an authenticated-calls app`,
      String.raw`  round  1: ${transports.map((t) => String.raw`${t} ${N} vs ${N}/s, CPU ${N} µs vs ${N} µs \(${N}\) *`).join(String.raw`\| `)}`,
      row('decorated: app CPU per request', ' µs'),
      row('plain: app CPU per request', ' µs'),
      row('decorated: requests/s', '/s'),
      row('plain: requests/s', '/s'),
      row('authenticated: app CPU per request', ' µs'),
      row('authenticated: requests/s', '/s'),
      String.raw`  load generator CPU per request +(?:${N} µs / ${N} µs / ${N} µs *){3}`,
      ...transports.flatMap((t) => [
        String.raw`  ${t} *plain / decorated app CPU per request = ${spreadOf} +target >= 0\.952: (?:met|MISSED)`,
        String.raw`  ${t} *decorated / plain requests/s += ${spreadOf}`,
        String.raw`  ${t} *unauthenticated / authenticated app CPU per request = ${spreadOf} +target >= 0\.90: (?:met|MISSED)`,
        String.raw`  ${t} *authenticated / unauthenticated requests/s += ${spreadOf}`,
      ]),
    ]);
    const otel = await runBench('branch-overhead', ['--transport', 'grpc', '--otel', 'instrumented', '--otel-only', '--trace', '--hand', ...load]);
    const set = 'SDK + instrumentations';
    expectFigures(otel, [
      String.raw`branch-overhead: grpc, NODE_ENV=production, 4 calls in flight on 1 connection \(gRPC, http2 client\), 1 rounds of 0\.3 s, .*, traceparent on every request, instrumentation off and on: ${lit(set)}`,
      ...['off', 'on', 'by hand'].map((what) => row(`${set}, ${what}: app CPU per request`, ' µs', 1)),
      String.raw`  load generator CPU per request +${N} µs / ${N} µs / ${N} µs *`,
      String.raw`  grpc ${lit(set)}: instrumentation off / on app CPU per request = ${spreadOf} +target >= 0\.95: (?:met|MISSED)`,
      String.raw`  grpc ${lit(set)}: instrumentation on / off requests/s += ${spreadOf}`,
      String.raw`  grpc ${lit(set)}: off / by hand app CPU per request \(OpenTelemetry's own cost\) += ${spreadOf}`,
      String.raw`  grpc ${lit(set)}: by hand / on app CPU per request \(the module's seam beyond it\) = ${spreadOf}`,
    ]);
  }, TWO_RUNS_MS);

  it('barrier-overhead: over HTTP (Fastify) and over gRPC (grpc-js load), PostgreSQL and MariaDB, nestjs-dtm and the Go SDK, sagas and the branch alone', async () => {
    for (const transport of [
      ['--transport', 'http', '--adapter', 'fastify'],
      ['--transport', 'grpc', '--grpc-client', 'grpc-js'],
    ]) {
      const dbs = await fileDatabases();
      const run = await runBench('barrier-overhead', [...transport, '--go', '--fast', '--connections', '8', '--seconds', '0.25', '--rounds', '1', '--warmup', '0'], { database: dbs.name });
      const grpc = transport[1] === 'grpc';
      const alone = (what: string, units: string, unit: string) =>
        ['PostgreSQL', 'MariaDB'].flatMap((store) => {
          const where = String.raw`  ${what} ${store} *`;
          const ratio = String.raw`${N} \(${N}–${N}\)`;
          return [
            String.raw`${where} nestjs-dtm: with barrier ${N} ${units}, without ${N} ${units}, with/without = ${N} \(paired per round ${ratio}\); CPU ${N} vs ${N} µs per ${unit}`,
            grpc
              ? String.raw`${where} Go SDK    : with barrier ${N} ${units}; CPU ${N} µs per ${unit} \(no twin without the barrier\)`
              : String.raw`${where} Go SDK    : with barrier ${N} ${units}, without ${N} ${units}, with/without = ${N} \(paired per round ${ratio}\); CPU ${N} vs ${N} µs per ${unit}`,
            String.raw`${where} with barrier, nestjs-dtm vs Go: ${N} vs ${N} ${units}, nestjs-dtm / Go = ${ratio}; CPU ${N} vs ${N} µs per ${unit}, Go / nestjs-dtm = ${ratio}`,
          ];
        });
      expectFigures(run, [
        String.raw`barrier-overhead over ${grpc ? 'gRPC' : 'HTTP'}: PostgreSQL and MariaDB \(${SHARED}, no fsync \(test settings\)\), 8 connections/callers, 1 rounds of 0\.25 s, .*`,
        grpc ? String.raw`branches: nestjs-dtm \(Nest app, @GrpcMethod handlers, hybrid app\); DTM's Go SDK \(dtmgrpc, grpc-go\)` : String.raw`branches: nestjs-dtm \(Nest app, Fastify\); DTM's Go SDK \(dtmcli, net/http\)`,
        String.raw`1\. completed two-step sagas per second through DTM \(\w+ store, submitted over ${grpc ? 'gRPC' : 'HTTP'}; target with/without >= 0\.92\)`,
        ...alone('sagas ', 'sagas/s', 'saga'),
        String.raw`2\. requests per second of the branch alone`,
        ...alone('branch', 'req/s', 'req'),
      ]);
    }
  }, TWO_RUNS_MS);

  it('check-actions: sagas on the app without and with branch_auth_check_actions', async () => {
    const run = await runBench('check-actions', ['--callers', '4', '--seconds', '0.4', '--rounds', '1', '--warmup', '0']);
    expectFigures(run, [
      String.raw`check-actions: two-step sagas with wait_result through DTM \(\w+ store, ${SHARED}\), 4 callers, 1 rounds of 0\.4 s, alternating, NODE_ENV=production`,
      String.raw`  sagas/s: off ${N}, on ${N}; on / off = ${spreadOf}`,
      String.raw`  branch app CPU per saga \(2 calls\): off ${N} µs, on ${N} µs; off / on = ${spreadOf}`,
    ]);
  }, ONE_RUN_MS);

  it('workflow-throughput: workflows and sagas', async () => {
    const run = await runBench('workflow-throughput', ['--callers', '2', '--seconds', '0.3', '--rounds', '1', '--warmup', '0']);
    expectFigures(run, [
      String.raw`workflow-throughput: DTM v1\.19\.0 \(\w+ store, ${SHARED}\), 2 callers, 1 rounds of 0\.3 s, drivers interleaved`,
      String.raw`  round 1: saga \(wait_result\) ${N}/s   workflow ${N}/s`,
      String.raw`saga \(wait_result\) +${range} completed/s; this process ${range} µs CPU each; DTM \+ Redis – \[–––\] µs each \(newGid, submit \(DTM calls both branches\)\)`,
      String.raw`workflow +${range} completed/s; this process ${range} µs CPU each; DTM \+ Redis – \[–––\] µs each \(newGid, prepareWorkflow, 2 x \(the app calls the branch, registerBranch\), submit\)`,
      String.raw`workflows/s ÷ sagas/s, per round: median ${N} \[${N}–${N}\] \(no target yet\)`,
    ]);
  }, ONE_RUN_MS);

  it('request-context: both places of the request context', async () => {
    const run = await runBench('request-context', ['--calls', '2000', '--rounds', '1']);
    expectFigures(run, [
      String.raw`request-context: 1 rounds of 2000 calls per setting, 15 awaits per call, SDK registered \(bench/otel-sdk\.ts\)`,
      String.raw`  the module's own AsyncLocalStorage beside the SDK's: CPU per call ${spreadOf} µs`,
      String.raw`  in the SDK's context \(the default\): +CPU per call ${spreadOf} µs`,
      String.raw`  paired per-round ratio own / SDK's context = ${spreadOf}`,
    ]);
  }, ONE_RUN_MS);

  it('xa-throughput: HTTP and gRPC, the module\'s XA, XA by hand and sagas, and its own check of the outcome', async () => {
    const dbs = await fileDatabases();
    const run = await runBench('xa-throughput', ['--protocol', 'both', '--fast', '--callers', '2', '--seconds', '0.3', '--rounds', '1'], { database: dbs.name });
    const drivers = ['HTTP XA, module', 'HTTP XA, by hand', 'HTTP saga (barrier)', 'gRPC XA, module', 'gRPC saga (barrier)'];
    const iqr = String.raw`${N} \[${N}–${N}\]`;
    expectFigures(run, [
      String.raw`xa-throughput: DTM v1\.19\.0 \(\w+ store, ${SHARED}\), PostgreSQL and MariaDB \(no fsync \(test settings\)\), .*, HTTP and gRPC, 2 callers, 1 rounds of 0\.3 s per driver, .*`,
      String.raw`  round  1: ${drivers.map((d) => String.raw`${lit(d)} ${N}/s`).join(String.raw` \| `)}`,
      // per driver: tx/s, the caller's and the participant's CPU; the shared servers' is not read
      ...drivers.map((d) => String.raw`  ${lit(d)} +${iqr} +${iqr} +${iqr} +– \[–––\] +– \[–––\] +– \[–––\]`),
      String.raw`  HTTP XA participant CPU per transaction, by hand / module: ${spreadOf}`,
      String.raw`  HTTP XA transactions/s, module / by hand: +${spreadOf}`,
      ...PROTOCOLS.flatMap((p) => [
        String.raw`  ${p} transactions/s, XA \(module\) / saga: +${spreadOf}`,
        String.raw`  ${p} participant CPU per transaction, saga / XA \(module\): +${spreadOf}`,
        String.raw`  ${p} caller CPU per transaction, saga / XA \(module\): +${spreadOf}`,
      ]),
      String.raw`outcome: all ${N} transactions recorded succeed by DTM, balances moved by 30 each on both databases, nothing left prepared`,
    ]);
  }, ONE_RUN_MS);

  it('chaos (npm run chaos): a run without faults of every mode, workflows and authenticated, checked calls included, every invariant holding', async () => {
    const dbs = await fileDatabases();
    const faults = ['--bank-kills', '0', '--dtm-restarts', '0', '--dtm-pauses', '0', '--db-stalls', '0', '--fault-rate', '0'];
    const run = await runBench('chaos', ['--seed', '1', '--transfers', '10', ...faults, '--workflows', '--branch-auth', '--check-actions', '--branch-timeout', '10', '--drain-seconds', '30'], { database: dbs.name });
    expectFigures(run, [
      String.raw`chaos: http with workflows, branch_auth_keys and branch_auth_check_actions, seed 1, 10 transfers, 8 at once, branch_timeout 10 s`,
      String.raw`OK: every invariant holds`,
    ]);
    // the figures, as JSON between the lines `{` and `}`
    let figures: Record<string, unknown> = {};
    try {
      figures = JSON.parse(run.stdout.slice(run.stdout.indexOf('\n{\n') + 1, run.stdout.indexOf('\n}\n') + 2)) as Record<string, unknown>;
    } catch (err) {
      failOn(run, [`its figures are not JSON between the lines { and }: ${(err as Error).message}`]);
    }
    const problems = Object.entries({ seed: 1, protocol: 'http', transfers: 10, stuck: 0 })
      .filter(([key, value]) => figures[key] !== value)
      .map(([key, value]) => `${key} ${JSON.stringify(figures[key])}, not ${JSON.stringify(value)}`);
    if (JSON.stringify(figures.problems) !== '[]') problems.push(`problems ${JSON.stringify(figures.problems)}`);
    if (JSON.stringify(figures.dtmOutcomes) !== JSON.stringify({ succeed: 10 })) problems.push(`DTM's outcomes ${JSON.stringify(figures.dtmOutcomes)}, not 10 succeed`);
    const modes = Object.keys((figures.byMode as object | undefined) ?? {}).sort();
    if (modes.join() !== 'msg,saga,tcc,workflow,xa') problems.push(`modes ${modes.join()}, not msg, saga, tcc, workflow and xa`);
    if (!((figures.signedByDtm as number) > 0)) problems.push(`no transaction signed by DTM (signedByDtm ${JSON.stringify(figures.signedByDtm)})`);
    for (const key of ['transferSeconds', 'throughput', 'drainSeconds']) if (!Number.isFinite(figures[key])) problems.push(`${key} ${JSON.stringify(figures[key])}, not a number`);
    failOn(run, problems);
  }, ONE_RUN_MS);
});
