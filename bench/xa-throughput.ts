// bench/xa-throughput: XA global transactions per second through the real DTM server (Redis store),
// and what they cost the caller, the participant, DTM and the databases, over HTTP and gRPC.
//
// The transaction: a transfer of two legs, PostgreSQL row id -30 and MariaDB row id +30 (one of 1000
// rows, a different one for each concurrent caller), with wait_result (DTM answers the submit after
// its first round of commits), started with TransactionHelper (a new gid from DTM, then the
// transaction). Drivers, each in a caller process of its own (bench/xa-caller.ts), all against one
// participant app in a child process (bench/xa-throughput.app.ts):
//   XA, module:  executeXa, the branches the module's @XaBranch (HTTP routes; gRPC methods);
//   XA, by hand: executeXa, the same branches written by hand against the database's XA statements
//                on a plain Nest route, as DTM's Go SDK runs them (HTTP only: the module's HTTP
//                branch handling vs none, both in the same participant process);
//   saga:        executeSaga of the same two legs, each a @SagaAction behind the barrier (the same
//                UPDATE in a local transaction on a pool), for context: sagas vs XA on the same accounts.
// Every XA branch opens a connection of its own per call (the module demands it; DTM's SDK does it).
//
// Per round every driver runs once, in turn, each round starting with the next driver. Printed per
// driver: completed transactions per second, the caller's CPU per transaction (process.cpuUsage of
// its caller process), the participant's, DTM's + Redis's, MariaDB's and PostgreSQL's (/proc; for
// PostgreSQL the postmaster and its backends, ended ones included); then ratios paired within each round, as the
// median with IQR and min–max: the participant's CPU per transaction by hand / module and
// transactions/s module / by hand (HTTP), XA / saga transactions per second and the participant's CPU
// saga / XA. No targets.
//
// At the end it checks its own outcome and exits 1 if it is not right: DTM recorded every transaction
// the callers started as succeed, the balances moved by exactly 30 per transaction on each database
// (PostgreSQL's sum -30 × n, MariaDB's +30 × n), and nothing is left prepared (pg_prepared_xacts,
// XA RECOVER).
//
// Databases with their default durability (fsync at every commit; --fast: the tests' settings).
// --fresh: a new caller process (warmed up) for every driver before each round after the first.
// --pg-pool: PostgreSQL's XA branches, the module's (pgXaDatabase(pool)) and the hand-written ones,
// borrow a pg Pool's client instead of a new client per call (MariaDB's stay a new connection each).
//
//   npm run bench:xa -- [--protocol http|grpc|both] [--callers 16] [--seconds 8] [--rounds 6] [--fast] [--fresh] [--pg-pool]
import 'reflect-metadata';
import { dirname, join } from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DtmClient, ensureBarrierSchema, mysqlBarrierDatabase, pgBarrierDatabase, resolveDtmConfig } from 'nestjs-dtm';
import { freePort } from '../test/support/services/process.js';
import { benchDatabaseUrls, benchStack, stackLabel } from './bench-stack.js';
import { processCpuMicros, quantile, startAppProcess, startTogether } from './load.js';
import { formatSpread, pairedRatios, spread } from './measure.js';

const { values } = parseArgs({
  options: {
    protocol: { type: 'string', default: 'both' },
    callers: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '6' },
    fast: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
    'pg-pool': { type: 'boolean', default: false },
  },
});
type Protocol = 'http' | 'grpc';
if (!['http', 'grpc', 'both'].includes(values.protocol!)) throw new Error(`--protocol must be http, grpc or both, not ${values.protocol}`);
const protocols: Protocol[] = values.protocol === 'both' ? ['http', 'grpc'] : [values.protocol as Protocol];
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
for (const [flag, n] of [['callers', callers], ['seconds', seconds], ['rounds', rounds]] as const) {
  if (!(n > 0)) throw new Error(`--${flag} must be a positive number, not ${String(values[flag])}`);
}
const here = dirname(fileURLToPath(import.meta.url));
const ROWS = 1000;
/** What each leg moves (bench/xa-throughput.app.ts's AMOUNT). */
const AMOUNT = 30;

type Kind = 'xa-module' | 'xa-hand' | 'saga';
const KIND_NAME: Record<Kind, string> = { 'xa-module': 'XA, module', 'xa-hand': 'XA, by hand', saga: 'saga (barrier)' };
const label = (p: Protocol) => (p === 'http' ? 'HTTP' : 'gRPC');

/** One driver's figures for one round (CPU times in µs per completed transaction; NaN without /proc). */
interface Sample {
  rate: number;
  caller: number;
  participant: number;
  dtm: number;
  mariadb: number;
  postgres: number;
}

/** A driver in its caller process. */
interface Driver {
  protocol: Protocol;
  kind: Kind;
  child: ChildProcess;
  samples: Sample[];
}

/** Where the callers send their transactions. */
interface Endpoints {
  serverUrl: string;
  grpcAddress: string;
  appUrl: string;
  appGrpc: string;
}

/** CPU time of processes `pids` so far (µs), NaN where it cannot be read (or no process is given: the harness's shared servers). */
const cpuOf = (pids: number[]) => (pids.length === 0 ? Number.NaN : pids.reduce((sum, pid) => sum + (processCpuMicros(pid) ?? Number.NaN), 0));

/**
 * CPU time (µs) of process `pid` and its descendants so far, ended ones included: its own and its
 * reaped children's (utime, stime, cutime, cstime of /proc/<pid>/stat), plus the same of each live
 * child (/proc/<pid>/task/<pid>/children). PostgreSQL's backends are processes of the postmaster:
 * a backend that ends between two readings is counted by its parent's cutime once reaped. NaN
 * without /proc.
 */
function treeCpuMicros(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11..14]: utime, stime, cutime, cstime (fields 14 to 17 of proc(5)), in clock ticks of 1/100 s
    const own = (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 10_000;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    // a child gone meanwhile reads NaN: counted 0 here, its time goes to the parent's cutime
    return children.reduce((sum, child) => sum + (treeCpuMicros(child) || 0), own);
  } catch {
    return Number.NaN;
  }
}

/** Starts the caller process of `protocol` / `kind`; resolves once it is ready. */
function startCaller(protocol: Protocol, kind: Kind, at: Endpoints): Promise<ChildProcess> {
  const child = fork(join(here, 'xa-caller.js'), [protocol, kind, at.serverUrl, at.grpcAddress, at.appUrl, at.appGrpc, String(callers), String(ROWS)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv, ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)],
  });
  return new Promise((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`caller ${protocol} ${kind} exited with ${code}`));
    child.once('exit', exited);
    child.once('message', () => {
      child.off('exit', exited);
      resolve(child);
    });
  });
}

/** Has the caller process `child` close its client and exit. */
async function stopCaller(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.send({ close: true });
  await exited;
}

/** Every gid a caller started (warm-ups included): checked at the end. */
const started: string[] = [];

/** Has `d` run its transaction for `durationSeconds`, metering the participant, DTM + Redis and MariaDB meanwhile. */
async function measure(d: Driver, durationSeconds: number, pids: { participant: number; dtm: number[]; mariadb?: number; postgres?: number }): Promise<Sample> {
  const tree = (pid: number | undefined) => (pid === undefined ? Number.NaN : treeCpuMicros(pid));
  const servers = () => ({ dtm: pids.dtm.length === 0 ? Number.NaN : pids.dtm.reduce((sum, pid) => sum + treeCpuMicros(pid), 0), mariadb: tree(pids.mariadb), postgres: tree(pids.postgres) });
  const before = { participant: cpuOf([pids.participant]), ...servers() };
  type Answer = { completed: number; elapsedSeconds: number; cpuMicros: number; gids: string[]; error?: string };
  const answer = await new Promise<Answer>((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`caller ${d.protocol} ${d.kind} exited with ${code}`));
    d.child.once('exit', exited);
    d.child.once('message', (message: Answer) => {
      d.child.off('exit', exited);
      resolve(message);
    });
    d.child.send({ run: durationSeconds });
  });
  started.push(...answer.gids);
  if (answer.error) throw new Error(`${label(d.protocol)} ${KIND_NAME[d.kind]}: ${answer.error}`);
  const after = servers();
  const n = answer.completed;
  if (n === 0) throw new Error(`${label(d.protocol)} ${KIND_NAME[d.kind]}: no transaction completed in ${durationSeconds} s`);
  return {
    rate: n / answer.elapsedSeconds,
    caller: answer.cpuMicros / n,
    participant: (cpuOf([pids.participant]) - before.participant) / n,
    dtm: (after.dtm - before.dtm) / n,
    mariadb: (after.mariadb - before.mariadb) / n,
    postgres: (after.postgres - before.postgres) / n,
  };
}

const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
/** `median [IQR q1–q3]` of `xs`. */
const iqr = (xs: number[], digits = 0) => `${fmt(quantile(xs, 0.5), digits)} [${fmt(quantile(xs, 0.25), digits)}–${fmt(quantile(xs, 0.75), digits)}]`;

/** Creates the accounts (ROWS rows at balance 0) and the barrier table on both databases. */
async function prepare(pgPool: pg.Pool, myPool: mysql.Pool): Promise<void> {
  for (const run of [(s: string) => pgPool.query(s), (s: string) => myPool.query(s)]) {
    await run('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
    await run(`INSERT INTO account (id, balance) VALUES ${Array.from({ length: ROWS }, (_, i) => `(${i + 1}, 0)`).join(', ')}`);
  }
  await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });
}

/**
 * The outcome every transaction must have left: DTM recorded each gid succeed, the balances moved
 * by AMOUNT per transaction (PostgreSQL down, MariaDB up), none of its XA branches left prepared
 * (their xid is `<gid>-<branch id>`: on the harness's shared servers, the tests' own may be prepared
 * meanwhile). The problems found.
 */
async function checkOutcome(client: DtmClient, pgPool: pg.Pool, myPool: mysql.Pool): Promise<string[]> {
  const problems: string[] = [];
  const notSucceeded: string[] = [];
  for (let i = 0; i < started.length; i += 32) {
    const batch = started.slice(i, i + 32);
    const records = await Promise.all(batch.map((gid) => client.query(gid)));
    records.forEach((r, j) => r?.status !== 'succeed' && notSucceeded.push(`${batch[j]}: ${r?.status ?? 'not found'}`));
  }
  if (notSucceeded.length > 0) problems.push(`${notSucceeded.length} of ${started.length} transactions not recorded succeed by DTM (first: ${notSucceeded.slice(0, 5).join(', ')})`);
  const pgSum = Number((await pgPool.query('SELECT COALESCE(sum(balance), 0) AS s FROM account')).rows[0].s);
  const [myRows] = await myPool.query('SELECT COALESCE(sum(balance), 0) AS s FROM account');
  const mySum = Number((myRows as { s: number | string }[])[0].s);
  const expected = AMOUNT * started.length;
  if (pgSum !== -expected || mySum !== expected) problems.push(`balances: PostgreSQL ${pgSum}, MariaDB ${mySum}; expected ${-expected} and ${expected} (${started.length} transactions of ${AMOUNT})`);
  const ours = new Set(started);
  const isOurs = (xid: string) => ours.has(xid.slice(0, xid.lastIndexOf('-')));
  const prepared = (await pgPool.query('SELECT gid FROM pg_prepared_xacts')).rows.filter((r: { gid: string }) => isOurs(r.gid)).map((r: { gid: string }) => `pg ${r.gid}`);
  const [recovered] = await myPool.query('XA RECOVER');
  prepared.push(...(recovered as { data: string }[]).filter((r) => isOurs(r.data)).map((r) => `mariadb ${r.data}`));
  if (prepared.length > 0) problems.push(`${prepared.length} XA branches left prepared (first: ${prepared.slice(0, 5).join(', ')})`);
  return problems;
}

async function main(): Promise<void> {
  const stack = await benchStack({ dtmStore: 'redis', durable: !values.fast });
  let app: Awaited<ReturnType<typeof startAppProcess>> | undefined;
  const drivers: Driver[] = [];
  let pgPool: pg.Pool | undefined;
  let myPool: mysql.Pool | undefined;
  let client: DtmClient | undefined;
  let problems: string[] | undefined;
  try {
    const { pgUrl, myUrl } = await benchDatabaseUrls(stack);
    pgPool = new pg.Pool({ connectionString: pgUrl, max: 2 });
    myPool = mysql.createPool({ uri: myUrl, connectionLimit: 2 });
    await prepare(pgPool, myPool);
    const dtm = stack.info.dtm!;
    const grpcPort = await freePort();
    app = await startAppProcess([process.execPath, join(here, 'xa-throughput.app.js')], {
      NODE_ENV: 'production',
      PG_URL: pgUrl,
      MYSQL_URL: myUrl,
      DTM_URL: dtm.serverUrl,
      DTM_GRPC: dtm.grpcAddress,
      GRPC_PORT: String(grpcPort),
      ...(values['pg-pool'] ? { PG_XA_POOL: '1' } : {}),
    });
    const at: Endpoints = { serverUrl: dtm.serverUrl, grpcAddress: dtm.grpcAddress, appUrl: `http://127.0.0.1:${app.port}`, appGrpc: `127.0.0.1:${app.grpcPort}` };
    const kinds = protocols.flatMap((protocol) => (['xa-module', 'xa-hand', 'saga'] as const).filter((kind) => protocol === 'http' || kind !== 'xa-hand').map((kind) => ({ protocol, kind })));
    await startTogether(
      kinds.map(({ protocol, kind }) => () => startCaller(protocol, kind, at)),
      (child, i) => drivers.push({ ...kinds[i], child, samples: [] }),
    );
    const byName = (name: string) => stack.processes.filter((p) => p.name === name).map((p) => p.pid);
    const pids = { participant: app.child.pid!, dtm: [...byName('dtm'), ...byName('redis')], mariadb: byName('mariadb')[0], postgres: byName('postgres')[0] };
    const name = (d: Driver) => `${label(d.protocol)} ${KIND_NAME[d.kind]}`;

    console.log(
      `xa-throughput: DTM ${dtm.version} (${dtm.store} store, ${stackLabel(stack)}), PostgreSQL and MariaDB (${values.fast ? 'no fsync (test settings)' : 'durable: fsync at every commit'}), ` +
        `PostgreSQL's XA branches on ${values['pg-pool'] ? "a pool's clients (--pg-pool)" : 'a new client per call'}, ${protocols.map(label).join(' and ')}, ${callers} callers, ${rounds} rounds of ${seconds} s per driver, drivers in turn, each round starting with the next; ` +
        `each driver in a caller process of its own${values.fresh ? ' (a new one each round)' : ''}; the participant a Nest app in a child process, NODE_ENV=production`,
    );
    const warmUp = Math.min(4, seconds);
    for (const d of drivers) await measure(d, warmUp, pids); // connections, JIT, DTM's Redis scripts
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < drivers.length; k++) {
        const d = drivers[(i + k) % drivers.length];
        if (values.fresh && i > 0) {
          await stopCaller(d.child);
          d.child = await startCaller(d.protocol, d.kind, at);
          await measure(d, warmUp, pids);
        }
        d.samples.push(await measure(d, seconds, pids));
      }
      console.log(`  round ${String(i + 1).padStart(2)}: ${drivers.map((d) => `${name(d)} ${fmt(d.samples[i].rate)}/s`).join(' | ')}`);
    }

    console.log(`\nper driver, median [IQR] over ${rounds} rounds; CPU times in µs per completed transaction (two legs):`);
    console.log(`  ${'driver'.padEnd(24)} ${'tx/s'.padEnd(16)} ${'caller CPU'.padEnd(16)} ${'participant CPU'.padEnd(16)} ${'DTM + Redis CPU'.padEnd(16)} ${'MariaDB CPU'.padEnd(16)} PostgreSQL CPU`);
    for (const d of drivers) {
      const col = (f: (s: Sample) => number) => iqr(d.samples.map(f)).padEnd(16);
      console.log(`  ${name(d).padEnd(24)} ${col((s) => s.rate)} ${col((s) => s.caller)} ${col((s) => s.participant)} ${col((s) => s.dtm)} ${col((s) => s.mariadb)} ${iqr(d.samples.map((s) => s.postgres))}`);
    }

    const of = (protocol: Protocol, kind: Kind) => drivers.find((d) => d.protocol === protocol && d.kind === kind)?.samples;
    console.log(`\nratios, median of the rounds' paired ratios (IQR, min–max); no targets:`);
    for (const p of protocols) {
      const [module, hand, saga] = [of(p, 'xa-module')!, of(p, 'xa-hand'), of(p, 'saga')!];
      if (hand) {
        console.log(`  ${label(p)} XA participant CPU per transaction, by hand / module: ${formatSpread(spread(pairedRatios(hand.map((s) => s.participant), module.map((s) => s.participant))))}`);
        console.log(`  ${label(p)} XA transactions/s, module / by hand:                   ${formatSpread(spread(pairedRatios(module.map((s) => s.rate), hand.map((s) => s.rate))))}`);
      }
      console.log(`  ${label(p)} transactions/s, XA (module) / saga:                    ${formatSpread(spread(pairedRatios(module.map((s) => s.rate), saga.map((s) => s.rate))))}`);
      console.log(`  ${label(p)} participant CPU per transaction, saga / XA (module):    ${formatSpread(spread(pairedRatios(saga.map((s) => s.participant), module.map((s) => s.participant))))}`);
      console.log(`  ${label(p)} caller CPU per transaction, saga / XA (module):        ${formatSpread(spread(pairedRatios(saga.map((s) => s.caller), module.map((s) => s.caller))))}`);
    }

    for (const d of drivers) await stopCaller(d.child);
    client = new DtmClient(resolveDtmConfig({ config: { serverUrl: dtm.serverUrl } }, {}));
    problems = await checkOutcome(client, pgPool, myPool);
    console.log(
      problems.length === 0
        ? `\noutcome: all ${started.length} transactions recorded succeed by DTM, balances moved by ${AMOUNT} each on both databases, nothing left prepared`
        : `\noutcome NOT RIGHT:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  } finally {
    for (const d of drivers) await stopCaller(d.child);
    client?.onModuleDestroy();
    if (app) {
      const { child } = app;
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    }
    await Promise.all([pgPool?.end(), myPool?.end()]);
    await stack.stop();
  }
  if (problems === undefined || problems.length > 0) process.exit(1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
