// npm run chaos -- --seed S --transfers N [--protocol http|grpc] [--concurrency 8] [--branch-timeout 2] [--bank-kills 2] [--dtm-restarts 1]
//                  [--dtm-pauses 1] [--pause-seconds 4] [--db-stalls 2] [--stall-seconds 4] [--dtm-store-stalls 0]
//                  [--connection-cuts 0] [--workflows] [--branch-auth [--check-actions]] [--fault-rate 0.06] [--replay-rate 0] [--drain-seconds 300]
//                  [--durable] [--json file]
//
// The fault-injection suite (test/support/chaos/chaos.ts) on private servers: a PostgreSQL and a
// MariaDB (the harness's; --durable: fsync at every commit), a DTM server on boltdb that the run
// kills with -9 and starts again, the banks' process (killed with -9 and started again), a proxy
// injecting 500s, delays past the branch timeout, duplicate deliveries and lost answers, DTM paused
// (SIGSTOP, --dtm-pauses, each --pause-seconds long), and the banks' databases stalling for the
// banks and the outbox (--db-stalls, each --stall-seconds long). --dtm-store-stalls N > 0: DTM keeps
// its transactions in a Redis of the run's own instead of boltdb, and that store stalls for DTM N
// times (each --stall-seconds long). --protocol grpc: the same run over gRPC (the caller talks gRPC to
// DTM, the banks' branches are @GrpcMethod handlers, the faults are injected by a gRPC proxy in front
// of the banks' gRPC server); --connection-cuts N: N times every gRPC connection to DTM and to the
// banks is reset (calls in flight on them lost). --workflows: workflow transfers too, whose app is the
// banks' process (its kills kill them mid-way; DTM resumes them there; over gRPC gRPC workflows); the first
// kill waits for a workflow's withdrawal to have run at the banks and lands before their app hears of it
// (workflowKills counts the workflows killed mid-run, resumed and final).
// --branch-auth: the banks and the caller hold a branch key (branch_auth_keys: every branch call signed
// and checked, confirms / compensations only in DTM's phase); --check-actions: the banks also set
// branch_auth_check_actions. --replay-rate R: that share of branch calls is delivered once more 3 to 8 s
// after it was answered (a replay; often after the transaction ended). Prints the
// figures (throughput, caller latencies, drain time, stuck transactions) and every broken invariant;
// exits with 1 if there is one.
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { runChaos } from '../test/support/chaos/chaos.js';
import { mariadbUrl } from '../test/support/services/mariadb.js';
import { postgresUrl } from '../test/support/services/postgres.js';
import { benchStack, harnessDatabase } from './bench-stack.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    transfers: { type: 'string', default: '400' },
    protocol: { type: 'string', default: 'http' },
    concurrency: { type: 'string', default: '8' },
    'branch-timeout': { type: 'string', default: '2' },
    'bank-kills': { type: 'string', default: '2' },
    'dtm-restarts': { type: 'string', default: '1' },
    'dtm-pauses': { type: 'string', default: '1' },
    'pause-seconds': { type: 'string' },
    'db-stalls': { type: 'string', default: '2' },
    'stall-seconds': { type: 'string' },
    'dtm-store-stalls': { type: 'string', default: '0' },
    'connection-cuts': { type: 'string', default: '0' },
    durable: { type: 'boolean', default: false },
    workflows: { type: 'boolean', default: false },
    'branch-auth': { type: 'boolean', default: false },
    'check-actions': { type: 'boolean', default: false },
    json: { type: 'string' },
    'fault-rate': { type: 'string', default: '0.06' },
    'replay-rate': { type: 'string', default: '0' },
    'drain-seconds': { type: 'string', default: '300' },
  },
});
const whole = (name: string, value: string | undefined, min: number): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be a whole number >= ${min}, got ${value}`);
    process.exit(2);
  }
  return n;
};
const options = {
  seed: whole('seed', values.seed, 0),
  transfers: whole('transfers', values.transfers, 1),
  concurrency: whole('concurrency', values.concurrency, 1),
  branchTimeout: whole('branch-timeout', values['branch-timeout'], 1),
  bankKills: whole('bank-kills', values['bank-kills'], 0),
  dtmRestarts: whole('dtm-restarts', values['dtm-restarts'], 0),
  dtmPauses: whole('dtm-pauses', values['dtm-pauses'], 0),
  pauseSeconds: values['pause-seconds'] === undefined ? undefined : whole('pause-seconds', values['pause-seconds'], 1),
  dbStalls: whole('db-stalls', values['db-stalls'], 0),
  stallSeconds: values['stall-seconds'] === undefined ? undefined : whole('stall-seconds', values['stall-seconds'], 1),
  drainSeconds: whole('drain-seconds', values['drain-seconds'], 1),
  dtmStoreStalls: whole('dtm-store-stalls', values['dtm-store-stalls'], 0),
  connectionCuts: whole('connection-cuts', values['connection-cuts'], 0),
  workflows: values.workflows,
  branchAuthKey: values['branch-auth'] ? randomBytes(33).toString('base64') : undefined,
  branchAuthCheckActions: values['check-actions'],
};
if (options.branchAuthCheckActions && !options.branchAuthKey) {
  console.error('--check-actions needs --branch-auth (branch_auth_check_actions works with branch_auth_keys only)');
  process.exit(2);
}
if (values.protocol !== 'http' && values.protocol !== 'grpc') {
  console.error(`--protocol must be http or grpc, got ${values.protocol}`);
  process.exit(2);
}
const protocol = values.protocol;
if (options.connectionCuts > 0 && protocol !== 'grpc') {
  console.error('--connection-cuts needs --protocol grpc');
  process.exit(2);
}
const rate = Number(values['fault-rate']);
if (!(rate >= 0 && rate <= 0.25)) {
  console.error(`--fault-rate must be from 0 to 0.25 (a share of branch calls per fault), got ${values['fault-rate']}`);
  process.exit(2);
}

const replayRate = Number(values['replay-rate']);
if (!(replayRate >= 0 && replayRate <= 0.25)) {
  console.error(`--replay-rate must be from 0 to 0.25 (a share of branch calls delivered again 3 to 8 s later), got ${values['replay-rate']}`);
  process.exit(2);
}

const stack = await benchStack({ dtm: false, redis: options.dtmStoreStalls > 0, durable: values.durable });
let failed: boolean;
try {
  const pgInfo = stack.info.postgres!;
  const myInfo = stack.info.mariadb!;
  // the harness's servers: the (empty) database it gives; else a new one on each
  const database = harnessDatabase(stack) ?? 'chaos';
  if (!stack.shared) {
    const admin = new pg.Client({ connectionString: pgInfo.adminUrl });
    await admin.connect();
    await admin.query('CREATE DATABASE chaos');
    await admin.end();
    const my = await mysql.createConnection(mariadbUrl(myInfo, ''));
    await my.query('CREATE DATABASE chaos');
    await my.end();
  }
  console.log(`chaos: ${protocol}${options.workflows ? ' with workflows' : ''}${options.branchAuthKey ? `, branch_auth_keys${options.branchAuthCheckActions ? ' and branch_auth_check_actions' : ''}` : ''}, seed ${options.seed}, ${options.transfers} transfers, ${options.concurrency} at once, branch_timeout ${options.branchTimeout} s`);
  const report = await runChaos({
    ...options,
    protocol,
    runDir: stack.runDir,
    pgUrl: postgresUrl(pgInfo, database),
    mysqlUrl: mariadbUrl(myInfo, database),
    dtmRedis: stack.info.redis,
    faults: { error500: rate, delay: rate, duplicate: rate, lostAnswer: rate, replay: replayRate },
    log: (line) => console.log(`  ${line}`),
  });
  const { transfersDetail, ...figures } = report;
  console.log(JSON.stringify(figures, null, 2));
  if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
  failed = report.problems.length > 0;
  if (failed) {
    // the run directory goes with the stack: keep its logs (DTM's, the banks') to find why
    const kept = mkdtempSync(join(tmpdir(), `chaos-${options.seed}-logs-`));
    for (const file of readdirSync(stack.runDir.path).filter((f) => f.endsWith('.log'))) copyFileSync(join(stack.runDir.path, file), join(kept, file));
    console.log(`logs kept in ${kept}`);
  }
  console.log(failed ? `FAILED: ${report.problems.length} problems` : 'OK: every invariant holds');
} finally {
  await stack.stop();
}
process.exit(failed ? 1 : 0);
