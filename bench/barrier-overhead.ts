// bench/barrier-overhead: the cost of the sub-transaction barrier on PostgreSQL and MariaDB, two ways.
//
// 1. sagas (DTM's own method, the one behind its published 531 vs 575 TPS = 0.92): completed
//    two-step sagas per second through the real DTM server (by default on a MySQL-family store, as
//    in DTM's benchmark: the harness's MariaDB), each step a branch doing one UPDATE in a local
//    transaction, with versus without the barrier. Target: >= 0.92.
// 2. branch: requests per second of that branch alone, called directly (a new gid each time, so the
//    barrier really inserts). Harsher: nothing but the branch's own work is left to share the cost.
//
// Private database servers from the test harness with their default durability (fsync at every
// commit, as in DTM's benchmark; --fast: the tests' no-fsync settings), the app in its own process,
// this process the load generator; every request updates one of 1000 rows. All on one 2-core machine.
// With --go the same is then measured for the same branches written with DTM's own Go SDK
// (test/support/go-peer: dtmcli's BranchBarrier, database/sql; scripts/bench.sh builds it), on the same databases and DTM server.
//
//   npm run bench:barrier -- [--connections 16] [--seconds 5] [--rounds 3] [--fast] [--dtm-store mysql|redis|boltdb] [--go]
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DtmClient, ensureBarrierSchema, mysqlBarrierDatabase, pgBarrierDatabase, resolveDtmConfig } from 'nestjs-dtm';
import { goPeerBinaryPath } from '../test/support/services/binaries.js';
import { mariadbUrl } from '../test/support/services/mariadb.js';
import { postgresUrl } from '../test/support/services/postgres.js';
import { startStack } from '../test/support/services/stack.js';
import { closedLoop, median, postJson, processCpuMicros, startAppProcess } from './load.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    fast: { type: 'boolean', default: false },
    'dtm-store': { type: 'string', default: 'mysql' },
    go: { type: 'boolean', default: false },
  },
});
const connections = Number(values.connections);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const ROWS = 1000;
const here = dirname(fileURLToPath(import.meta.url));

async function prepare(pgUrl: string, myUrl: string): Promise<void> {
  const pgPool = new pg.Pool({ connectionString: pgUrl });
  const myPool = mysql.createPool({ uri: myUrl });
  try {
    for (const run of [(s: string) => pgPool.query(s), (s: string) => myPool.query(s)]) {
      await run('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
      await run(`INSERT INTO account (id, balance) VALUES ${Array.from({ length: ROWS }, (_, i) => `(${i + 1}, 0)`).join(', ')}`);
    }
    await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
    await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });
  } finally {
    await Promise.all([pgPool.end(), myPool.end()]);
  }
}

let sequence = 0;
/** Loads `path` for `durationSeconds` on `connections` keep-alive connections, a new gid each call; answers 200s per second. */
async function load(port: number, path: string, durationSeconds: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  try {
    return await closedLoop(connections, durationSeconds, async () => {
      const n = ++sequence;
      const query = `?gid=bench${process.pid}x${n}&trans_type=saga&branch_id=01&op=action`;
      const status = await postJson(agent, port, `${path}${query}`, JSON.stringify({ id: (n % ROWS) + 1 }));
      if (status !== 200) throw new Error(`${path} answered ${status}`);
    });
  } finally {
    agent.destroy();
  }
}

/** Completed two-step sagas per second on `path` (both steps), `connections` callers, through DTM. */
function sagas(client: DtmClient, port: number, path: string, durationSeconds: number): Promise<number> {
  const url = `http://127.0.0.1:${port}${path}`;
  return closedLoop(connections, durationSeconds, async () => {
    const n = ++sequence;
    const gid = await client.generateGid();
    await client
      .newSaga(gid, { waitResult: true })
      .add(url, '', { id: (n % ROWS) + 1 })
      .add(url, '', { id: ((n + 500) % ROWS) + 1 })
      .submit();
  });
}

/**
 * Runs `measure` on both paths of `store`, alternating, and prints the medians, their ratio and the
 * participant's CPU time per saga / request (process `pid`).
 */
async function compare(label: string, store: 'pg' | 'mysql', unit: string, pid: number, measure: (path: string, seconds: number) => Promise<number>): Promise<void> {
  await measure(`/${store}/with`, 2); // warm-up
  await measure(`/${store}/without`, 2);
  const runs = { with: { rates: [] as number[], cpu: [] as number[] }, without: { rates: [] as number[], cpu: [] as number[] } };
  const run = async (path: 'with' | 'without') => {
    const cpuBefore = processCpuMicros(pid);
    const rate = await measure(`/${store}/${path}`, seconds);
    const cpuAfter = processCpuMicros(pid);
    runs[path].rates.push(rate);
    if (cpuBefore !== undefined && cpuAfter !== undefined) runs[path].cpu.push((cpuAfter - cpuBefore) / (rate * seconds));
  };
  for (let i = 0; i < rounds; i++) {
    // alternate which goes first, so that neither is always measured right after the other
    for (const path of i % 2 === 0 ? (['with', 'without'] as const) : (['without', 'with'] as const)) await run(path);
  }
  const [w, wo] = [median(runs.with.rates), median(runs.without.rates)];
  const name = store === 'pg' ? 'PostgreSQL' : 'MariaDB';
  const cpu = runs.with.cpu.length > 0 ? `; branches' CPU ${median(runs.with.cpu).toFixed(0)} vs ${median(runs.without.cpu).toFixed(0)} µs per ${unit.split('/')[0].replace(/s$/, '')}` : '';
  console.log(`  ${label} ${name.padEnd(10)}: with barrier ${w.toFixed(0)} ${unit}, without ${wo.toFixed(0)} ${unit}, with/without = ${(w / wo).toFixed(3)}${cpu}`);
}

async function main(): Promise<void> {
  const dtmStore = values['dtm-store'] as 'mysql' | 'redis' | 'boltdb';
  const stack = await startStack({ redis: dtmStore === 'redis', dtmStore, durable: !values.fast });
  let app: Awaited<ReturnType<typeof startAppProcess>> | undefined;
  const stopApp = async () => {
    if (!app) return;
    const { child } = app;
    app = undefined;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  try {
    const pgUrl = postgresUrl(stack.info.postgres!, 'postgres');
    const myAdmin = await mysql.createConnection({ uri: stack.info.mariadb!.adminUrl });
    await myAdmin.query('CREATE DATABASE bench');
    await myAdmin.end();
    const myUrl = mariadbUrl(stack.info.mariadb!, 'bench');
    await prepare(pgUrl, myUrl);
    const env = { NODE_ENV: 'production', PG_URL: pgUrl, MYSQL_URL: myUrl };
    const participants = [
      { name: 'nestjs-dtm (Nest app, Express)', start: () => startAppProcess([process.execPath, join(here, 'barrier-overhead.app.js')], env) },
      ...(values.go ? [{ name: "DTM's Go SDK (dtmcli, net/http)", start: () => startAppProcess([goPeerBinaryPath()], env) }] : []),
    ];
    console.log(
      `barrier-overhead: PostgreSQL and MariaDB (harness instances, ${values.fast ? 'no fsync (test settings)' : 'durable: fsync at every commit'}), ` +
        `${connections} connections/callers, ${rounds} rounds of ${seconds} s, medians, NODE_ENV=production`,
    );
    const client = new DtmClient(resolveDtmConfig({ config: { serverUrl: stack.info.dtm!.serverUrl } }, {}));
    for (const participant of participants) {
      app = await participant.start();
      const port = app.port;
      console.log(`branches: ${participant.name}`);
      console.log(`1. completed two-step sagas per second through DTM (${dtmStore} store; target with/without >= 0.92)`);
      for (const store of ['pg', 'mysql'] as const) await compare('sagas ', store, 'sagas/s', app.child.pid!, (path, s) => sagas(client, port, path, s));
      console.log('2. requests per second of the branch alone');
      for (const store of ['pg', 'mysql'] as const) await compare('branch', store, 'req/s', app.child.pid!, (path, s) => load(port, path, s));
      await stopApp();
    }
    client.onModuleDestroy();
  } finally {
    await stopApp();
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
