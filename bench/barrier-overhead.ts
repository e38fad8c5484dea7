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
// With --go the same is measured for the same branches written with DTM's own Go SDK
// (test/support/go-peer: dtmcli's / dtmgrpc's BranchBarrier, database/sql; scripts/bench.sh builds
// it), on the same databases and DTM server, and the two participants are set side by side.
//
// --transport http (the default): the sagas are submitted over DTM's HTTP API and their steps are
// HTTP routes (nestjs-dtm: Express, or Fastify with --adapter fastify; Go: net/http). --transport grpc: the sagas are submitted over
// DTM's gRPC API (DtmClient with protocol 'grpc') and their steps are gRPC methods: nestjs-dtm's
// @GrpcMethod handlers bench.PgBench/With, /Without, bench.MysqlBench/... (bench/bench.proto: the
// same handlers as the HTTP routes, in a hybrid app), and the Go peer's bank.GoBank/PgBench and
// MysqlBench (dtmgrpc's barrier; the Go peer has no gRPC twin of /without, so Go over gRPC is
// measured with the barrier only). Payload: a Move with field 1 = the row, the same bytes for both.
//
// Both participants run all the time; per store and measure, each round runs every variant
// (participant × with / without barrier) once, in an order that rotates from round to round. The
// participant's CPU time (user + system, /proc/<pid>/stat) is metered over each run, per completed
// saga (its two branch calls) or request. The branch alone over gRPC: unary calls framed by hand
// on node:http2 (--grpc-client grpc-js: through @grpc/grpc-js; see bench/measure.ts).
// --warmup S: each variant's warm-up, per store and measure, lasts S seconds (0: none).
//
//   npm run bench:barrier -- [--transport http|grpc] [--adapter express|fastify] [--connections 16] [--seconds 5] [--rounds 3] [--warmup 2] [--fast]
//                            [--dtm-store mysql|redis|boltdb] [--go] [--grpc-client http2|grpc-js]
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DtmClient, ensureBarrierSchema, mysqlBarrierDatabase, pgBarrierDatabase, resolveDtmConfig } from 'nestjs-dtm';
import { goPeerBinaryPath } from '../test/support/services/binaries.js';
import { freePort } from '../test/support/services/process.js';
import { benchDatabaseUrls, benchStack, stackLabel } from './bench-stack.js';
import { closedLoopRun, postJson, startAppProcess } from './load.js';
import {
  branchMetadata,
  cpuSeries,
  grpcCaller,
  grpcLoad,
  interleaved,
  metered,
  pairedRatios,
  spread,
  type GrpcClientKind,
} from './measure.js';

const { values } = parseArgs({
  options: {
    transport: { type: 'string', default: 'http' },
    adapter: { type: 'string', default: 'express' },
    connections: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    fast: { type: 'boolean', default: false },
    'dtm-store': { type: 'string', default: 'mysql' },
    go: { type: 'boolean', default: false },
    'grpc-client': { type: 'string', default: 'http2' },
  },
});
const connections = Number(values.connections);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
if (!(warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0, not ${values.warmup}`);
const transport = values.transport as 'http' | 'grpc';
if (transport !== 'http' && transport !== 'grpc') throw new Error(`--transport: http or grpc, not ${values.transport}`);
if (values.adapter !== 'express' && values.adapter !== 'fastify') throw new Error(`--adapter: express or fastify, not ${values.adapter}`);
const grpcClient = values['grpc-client'] as GrpcClientKind;
if (grpcClient !== 'http2' && grpcClient !== 'grpc-js') throw new Error(`--grpc-client: http2 or grpc-js, not ${grpcClient}`);
const ROWS = 1000;
const here = dirname(fileURLToPath(import.meta.url));

type Store = 'pg' | 'mysql';
type Barrier = 'with' | 'without';
type Who = 'nest' | 'go';
const STORE_NAME: Record<Store, string> = { pg: 'PostgreSQL', mysql: 'MariaDB' };
const WHO_NAME: Record<Who, string> = { nest: 'nestjs-dtm', go: 'Go SDK' };

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

/** A Move for row `id`, as protobuf (bench.Move / bank.Move: field 1, varint): the same bytes for both participants. */
function moveBytes(id: number): Buffer {
  const bytes = [0x08];
  for (let v = id; ; v >>>= 7) {
    if (v < 0x80) {
      bytes.push(v);
      break;
    }
    bytes.push((v & 0x7f) | 0x80);
  }
  return Buffer.from(bytes);
}
const MOVES = Array.from({ length: ROWS + 1 }, (_, id) => moveBytes(id));

let sequence = 0;

/** A participant process and how to reach its branch (store, with / without) on the bench's transport. */
interface Participant {
  who: Who;
  pid: number;
  /** The branch's HTTP URL or gRPC target; undefined when the participant has no such branch. */
  target(store: Store, barrier: Barrier): string | undefined;
  /** Calls the branch directly (a new gid each call) for `s` seconds. */
  alone(store: Store, barrier: Barrier, s: number): Promise<{ completed: number; elapsedSeconds: number }>;
  close(): Promise<void>;
}

async function startParticipant(who: Who, env: Record<string, string>): Promise<Participant> {
  const grpcPort = await freePort();
  const argv = who === 'nest' ? [process.execPath, join(here, 'barrier-overhead.app.js')] : [goPeerBinaryPath()];
  // the Nest app serves gRPC only when asked (GRPC_PORT); the Go peer always does
  const appEnv = { ...env, BENCH_ADAPTER: values.adapter! };
  const app = await startAppProcess(argv, transport === 'grpc' || who === 'go' ? { ...appEnv, GRPC_PORT: String(grpcPort) } : appEnv);
  const close = async () => {
    app.child.kill('SIGTERM');
    if (app.child.exitCode === null) await new Promise((r) => app.child.once('exit', r));
  };
  if (transport === 'http') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
    return {
      who,
      pid: app.child.pid!,
      target: (store, barrier) => `http://127.0.0.1:${app.port}/${store}/${barrier}`,
      alone: (store, barrier, s) =>
        closedLoopRun(connections, s, async () => {
          const n = ++sequence;
          const query = `?gid=bench${process.pid}x${n}&trans_type=saga&branch_id=01&op=action`;
          const status = await postJson(agent, app.port, `/${store}/${barrier}${query}`, JSON.stringify({ id: (n % ROWS) + 1 }));
          if (status !== 200) throw new Error(`${who} /${store}/${barrier} answered ${status}`);
        }),
      close: () => {
        agent.destroy();
        return close();
      },
    };
  }
  const address = `127.0.0.1:${app.grpcPort}`;
  const path = (store: Store, barrier: Barrier): string | undefined =>
    who === 'nest' ? `/bench.${store === 'pg' ? 'PgBench' : 'MysqlBench'}/${barrier === 'with' ? 'With' : 'Without'}` : barrier === 'with' ? `/bank.GoBank/${store === 'pg' ? 'PgBench' : 'MysqlBench'}` : undefined;
  const caller = grpcCaller(grpcClient, address);
  return {
    who,
    pid: app.child.pid!,
    target: (store, barrier) => {
      const p = path(store, barrier);
      return p && `${address}${p}`;
    },
    alone: (store, barrier, s) =>
      grpcLoad(caller, connections, s, path(store, barrier)!, () => {
        const n = ++sequence;
        return { bytes: MOVES[(n % ROWS) + 1], metadata: branchMetadata(`bench${process.pid}x${n}`) };
      }),
    close: () => {
      caller.close();
      return close();
    },
  };
}

/** Completed two-step sagas per second on `target` (both steps), `connections` callers, through DTM. */
function sagas(client: DtmClient, target: string, durationSeconds: number) {
  return closedLoopRun(connections, durationSeconds, async () => {
    const n = ++sequence;
    const [a, b] = [(n % ROWS) + 1, ((n + 500) % ROWS) + 1];
    const gid = await client.generateGid();
    const saga = client.newSaga(gid, { waitResult: true });
    if (transport === 'grpc') saga.add(target, '', MOVES[a]).add(target, '', MOVES[b]);
    else saga.add(target, '', { id: a }).add(target, '', { id: b });
    await saga.submit();
  });
}

type Key = `${Who}:${Barrier}`;

/**
 * Runs `measure` on every variant of `store` that the participants have, interleaved with a
 * rotating start, after a warm-up; prints each participant's medians, with / without, its CPU per
 * saga or request, and (with --go) the participants side by side.
 */
async function compare(label: string, store: Store, unit: 'saga' | 'req', participants: Participant[], measure: (p: Participant, barrier: Barrier, s: number) => Promise<{ completed: number; elapsedSeconds: number }>): Promise<void> {
  const variants = new Map<Key, { p: Participant; barrier: Barrier }>();
  for (const p of participants) for (const barrier of ['with', 'without'] as const) if (p.target(store, barrier)) variants.set(`${p.who}:${barrier}`, { p, barrier });
  const keys = [...variants.keys()];
  if (warmup > 0) for (const key of keys) await measure(variants.get(key)!.p, variants.get(key)!.barrier, warmup); // warm-up
  const results = await interleaved(keys, rounds, (key) => {
    const { p, barrier } = variants.get(key)!;
    return metered(p.pid, () => measure(p, barrier, seconds));
  });
  const rate = (key: Key) => results[key].map((r) => r.rate);
  const med = (xs: number[]) => spread(xs).median;
  const cpu = (key: Key): number | undefined => {
    const xs = cpuSeries(results[key]);
    return xs && med(xs);
  };
  const units = unit === 'saga' ? 'sagas/s' : 'req/s';
  const range = (xs: number[]) => {
    const r = spread(xs);
    return `${r.median.toFixed(3)} (${r.min.toFixed(3)}–${r.max.toFixed(3)})`;
  };
  const where = `  ${label} ${STORE_NAME[store].padEnd(10)}`;
  for (const p of participants) {
    const [w, wo] = [`${p.who}:with`, `${p.who}:without`] as const;
    if (!results[w]) continue;
    const [cpuW, cpuWo] = [cpu(w), results[wo] ? cpu(wo) : undefined];
    let line = `${where} ${WHO_NAME[p.who].padEnd(10)}: with barrier ${med(rate(w)).toFixed(0)} ${units}`;
    if (results[wo]) line += `, without ${med(rate(wo)).toFixed(0)} ${units}, with/without = ${(med(rate(w)) / med(rate(wo))).toFixed(3)} (paired per round ${range(pairedRatios(rate(w), rate(wo)))})`;
    if (cpuW !== undefined) line += `; CPU ${cpuW.toFixed(0)}${cpuWo !== undefined ? ` vs ${cpuWo.toFixed(0)}` : ''} µs per ${unit}`;
    if (!results[wo]) line += ' (no twin without the barrier)';
    console.log(line);
  }
  if (results['nest:with'] && results['go:with']) {
    const [n, g] = [cpuSeries(results['nest:with']), cpuSeries(results['go:with'])];
    console.log(
      `${where} with barrier, nestjs-dtm vs Go: ${med(rate('nest:with')).toFixed(0)} vs ${med(rate('go:with')).toFixed(0)} ${units}, nestjs-dtm / Go = ${range(pairedRatios(rate('nest:with'), rate('go:with')))}` +
        (n && g ? `; CPU ${med(n).toFixed(0)} vs ${med(g).toFixed(0)} µs per ${unit}, Go / nestjs-dtm = ${range(pairedRatios(g, n))}` : ''),
    );
  }
}

async function main(): Promise<void> {
  const dtmStore = values['dtm-store'] as 'mysql' | 'redis' | 'boltdb';
  const stack = await benchStack({ redis: dtmStore === 'redis', dtmStore, durable: !values.fast });
  const participants: Participant[] = [];
  try {
    const { pgUrl, myUrl } = await benchDatabaseUrls(stack);
    await prepare(pgUrl, myUrl);
    const env = { NODE_ENV: 'production', PG_URL: pgUrl, MYSQL_URL: myUrl };
    participants.push(await startParticipant('nest', env));
    if (values.go) participants.push(await startParticipant('go', env));
    console.log(
      `barrier-overhead over ${transport === 'grpc' ? 'gRPC' : 'HTTP'}: PostgreSQL and MariaDB (${stackLabel(stack)}, ${values.fast ? 'no fsync (test settings)' : 'durable: fsync at every commit'}), ` +
        `${connections} connections/callers, ${rounds} rounds of ${seconds} s, interleaved with a rotating start, medians, NODE_ENV=production`,
    );
    console.log(
      `branches: nestjs-dtm (Nest app, ${transport === 'grpc' ? '@GrpcMethod handlers, hybrid app' : values.adapter === 'fastify' ? 'Fastify' : 'Express'})` +
        (values.go ? `; DTM's Go SDK (${transport === 'grpc' ? 'dtmgrpc, grpc-go' : 'dtmcli, net/http'})` : ''),
    );
    const client = new DtmClient(
      resolveDtmConfig({ config: { serverUrl: stack.info.dtm!.serverUrl, ...(transport === 'grpc' ? { protocol: 'grpc', grpcServer: stack.info.dtm!.grpcAddress } : {}) } }, {}),
    );
    console.log(`1. completed two-step sagas per second through DTM (${stack.info.dtm!.store} store, submitted over ${transport === 'grpc' ? 'gRPC' : 'HTTP'}; target with/without >= 0.92)`);
    for (const store of ['pg', 'mysql'] as const) await compare('sagas ', store, 'saga', participants, (p, barrier, s) => sagas(client, p.target(store, barrier)!, s));
    console.log('2. requests per second of the branch alone');
    for (const store of ['pg', 'mysql'] as const) await compare('branch', store, 'req', participants, (p, barrier, s) => p.alone(store, barrier, s));
    client.onModuleDestroy();
  } finally {
    await Promise.all(participants.map((p) => p.close()));
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
