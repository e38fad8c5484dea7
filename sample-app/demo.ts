// `npm run demo`: starts what the sample app needs (a DTM server, PostgreSQL, MariaDB: the test
// harness's code) unless told to use running ones, starts the sample app, runs one transaction of
// each kind against it and prints what DTM recorded and what the databases hold, then stops
// everything it started.
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import type { LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DtmBranchRegistry, DtmRemoteBranchError, type BranchRecord, type FinalResult } from 'nestjs-dtm';
import { mariadbUrl } from '../test/support/services/mariadb.js';
import { postgresUrl } from '../test/support/services/postgres.js';
import { freePort } from '../test/support/services/process.js';
import { startStack, type Stack } from '../test/support/services/stack.js';
import { AppModule } from './src/app.module.js';
import { TransfersService } from './src/banks/transfers.service.js';
import { ShopService } from './src/shop/shop.service.js';
import type { Order } from './src/shop/shop.types.js';

const HELP = `Usage: npm run demo [-- options]

Starts a DTM server v1.19.0, PostgreSQL and MariaDB (private instances on free ports, removed at the
end), starts the sample app (sample-app/: bank A on PostgreSQL, bank B and a shop on MariaDB) and
runs: a saga transfer that commits; a saga checkout that fails at shipping and compensates; one whose
order the shop's contract refuses (its schema, checked before anything reaches DTM); a TCC
reservation that confirms and one that cancels; an outbox message; an XA transfer that commits and
one that rolls back; a workflow transfer that succeeds and one that is refused. Prints, per
transaction, DTM's final status, the rollback reason (the branch's own message), the gid, the
branches DTM called (by name and op, in the order they ran, with their outcome), and the balances /
stock before and after.

Options (each also from the environment variable in brackets):
  --dtm-url <url>     use this running DTM server (its server_url, e.g. http://localhost:36789/api/dtmsvr)
                      [DTM_SERVER_URL]; it must be able to reach this machine's loopback address
  --pg-url <url>      use this PostgreSQL database (needs max_prepared_transactions > 0 for XA) [PG_URL]
  --mysql-url <url>   use this MySQL / MariaDB database (mysql://user:password@host:port/db) [MYSQL_URL]
  --keep              leave DTM (and the databases) running after the demo, so the printed gids can be
                      queried (the command is printed); Ctrl-C stops them
  --help              show this help

The demo resets the tables it uses (account, product, wallet, shipment, purchase) in those databases.
`;

interface State {
  alice: number;
  bob: number;
  stock: number;
  reserved: number;
  wallet: number;
  frozen: number;
  shipped: number;
  purchases: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'dtm-url': { type: 'string' }, 'pg-url': { type: 'string' }, 'mysql-url': { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  let dtmUrl = values['dtm-url'] ?? process.env.DTM_SERVER_URL;
  let pgUrl = values['pg-url'] ?? process.env.PG_URL;
  let mysqlUrl = values['mysql-url'] ?? process.env.MYSQL_URL;
  let stack: Stack | undefined;
  if (!dtmUrl || !pgUrl || !mysqlUrl) {
    stack = await startStack({ dtm: !dtmUrl, postgres: !pgUrl, mariadb: !mysqlUrl, redis: false });
    dtmUrl ??= stack.info.dtm?.serverUrl;
    pgUrl ??= await createDatabase('postgres', postgresUrl(stack.info.postgres!, 'postgres'), (db) => postgresUrl(stack!.info.postgres!, db));
    mysqlUrl ??= await createDatabase('mysql', stack.info.mariadb!.adminUrl, (db) => mariadbUrl(stack!.info.mariadb!, db));
  }
  console.log(`DTM server: ${dtmUrl}${stack?.info.dtm ? ` (v${stack.info.dtm.version.slice(1)}, started for the demo)` : ''}`);
  console.log(`PostgreSQL: ${pgUrl}\nMariaDB:    ${mysqlUrl.replace(/:[^:@/]+@/, ':***@')}`);

  // read by sample-app/config.yaml and the app's database module
  const port = await freePort();
  Object.assign(process.env, { DTM_SERVER_URL: dtmUrl, PG_URL: pgUrl, MYSQL_URL: mysqlUrl, APP_URL: `http://127.0.0.1:${port}` });
  // as sample-app/src/main.ts: connections kept longer than DTM keeps an idle one, and ended by app.close()
  const app = await NestFactory.create(AppModule, { logger: new DemoLogger(), forceCloseConnections: true });
  app.getHttpServer().keepAliveTimeout = 95_000;
  let keep = false;
  try {
    await app.listen(port, '127.0.0.1');
    console.log(`sample app: ${process.env.APP_URL}\n`);
    const pgPool = new pg.Pool({ connectionString: pgUrl });
    const myPool = mysql.createPool({ uri: mysqlUrl });
    try {
      await seed(pgPool, myPool);
      const state = () => readState(pgPool, myPool);
      const transfers = app.get(TransfersService);
      const shop = app.get(ShopService);
      const order = (id: string, qty: number, amount: number, address = 'springfield'): Order => ({ orderId: id, sku: 'widget', qty, customer: 'carol', amount, address });

      const rows: Row[] = [];
      const registry = app.get(DtmBranchRegistry);
      // 'refused': the caller refuses the transaction before anything reaches DTM (a contract's schema)
      const run = async (mode: string, what: string, expected: FinalResult['status'] | 'refused', show: (s: State) => string, action: () => Promise<FinalResult>) => {
        const before = await state();
        let final: FinalResult;
        try {
          final = await action();
        } catch (err) {
          if (expected !== 'refused' || !(err instanceof DtmRemoteBranchError)) throw err;
          const why = /contract entry: (.*?)\. Nothing was sent/.exec(err.message)?.[1] ?? err.message;
          const change = `${show(before)} -> ${show(await state())}`;
          rows.push({ mode, what, gid: '(none: nothing was sent to DTM)', status: 'refused', reason: `${err.name}: ${why}`, branches: [], change, ok: true });
          return;
        }
        const after = await state();
        rows.push({
          mode,
          what,
          gid: final.gid,
          status: final.status,
          reason: final.rollbackReason ?? '',
          branches: branchOutcomes(final.branches, (url) => registry.routeAt(url)?.name),
          change: `${show(before)} -> ${show(after)}`,
          ok: final.status === expected,
        });
      };
      const bank = (s: State) => `alice ${s.alice}, bob ${s.bob}`;
      const stock = (s: State) => `stock ${s.stock}, carol ${s.wallet}, shipped ${s.shipped}`;
      const reserve = (s: State) => `stock ${s.stock}+${s.reserved} reserved, carol ${s.wallet}+${s.frozen} frozen`;
      const outbox = (s: State) => `purchases ${s.purchases}, shipped ${s.shipped}`;

      await run('saga', 'transfer 30 alice -> bob', 'succeed', bank, () => transfers.saga('alice', 'bob', 30));
      await run('saga', 'checkout 2 widgets, ship to atlantis', 'failed', stock, () => shop.checkout(order('o-1', 2, 40, 'atlantis')));
      await run('saga', 'checkout -1 widgets (the contract refuses it)', 'refused', stock, () => shop.checkout(order('o-0', -1, 10)));
      await run('tcc', 'reserve 1 widget, pay 25', 'succeed', reserve, () => shop.reserve(order('o-2', 1, 25)));
      await run('tcc', 'reserve 2 widgets, pay 500', 'failed', reserve, () => shop.reserve(order('o-3', 2, 500)));
      await run('msg', 'order placed -> shipping told', 'succeed', outbox, () => shop.placeOrder(order('o-4', 1, 20)));
      await run('xa', 'transfer 20 alice -> bob', 'succeed', bank, () => transfers.xa('alice', 'bob', 20));
      await run('xa', 'transfer 20 alice -> mallory (no such account at B)', 'failed', bank, () => transfers.xa('alice', 'mallory', 20));
      await run('workflow', 'transfer 10 alice -> bob', 'succeed', bank, () => transfers.workflow('alice', 'bob', 10));
      await run('workflow', 'transfer 500 alice -> bob (too much)', 'failed', bank, () => transfers.workflow('alice', 'bob', 500));
      printTable(rows);
      if (rows.some((r) => !r.ok)) {
        console.error('\nunexpected: a transaction did not end as it should (marked !)');
        process.exitCode = 1;
      }
      if (values.keep) {
        keep = true;
        console.log(`\nDTM keeps running (--keep). What it recorded for a transaction, e.g. the first one:\n  curl -s '${dtmUrl}/query?gid=${rows[0].gid}'`);
        console.log(`Every transaction: curl -s '${dtmUrl}/all'`);
      }
    } finally {
      await Promise.all([pgPool.end(), myPool.end()]);
    }
  } finally {
    await app.close();
    if (keep && stack) {
      console.log('Ctrl-C stops DTM and the databases.');
      // a signal listener alone does not keep Node running (and DTM is stopped when this process ends)
      const alive = setInterval(() => undefined, 1 << 30);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      clearInterval(alive);
    }
    await stack?.stop();
  }
}

/** Undo ops: DTM runs them after the forward ones, the last branch first. */
const UNDO_OPS = new Set(['compensate', 'cancel', 'rollback']);

/**
 * The branches DTM called, in the order it ran them (forward ops by branch id, then undo ops from the
 * last branch back), each as `name op outcome`; the branches it never called (still `prepared`) are left out.
 */
function branchOutcomes(branches: readonly BranchRecord[], nameOf: (url: string) => string | undefined): string[] {
  const called = branches.filter((b) => b.status !== 'prepared');
  const forward = called.filter((b) => !UNDO_OPS.has(b.op)).sort((a, b) => a.branchId.localeCompare(b.branchId));
  const undo = called.filter((b) => UNDO_OPS.has(b.op)).sort((a, b) => b.branchId.localeCompare(a.branchId));
  return [...forward, ...undo].map((b) => {
    const name = (b.url && nameOf(b.url)) ?? (b.url ? b.url.replace(/[?#].*$/, '').split('/').pop() : `step ${b.branchId}`);
    return `${name} ${b.op} ${b.status === 'succeed' ? 'ok' : 'FAILED'}`;
  });
}

/** Creates database `demo` through `adminUrl` (dropping an older one) and answers its URL. */
async function createDatabase(kind: 'postgres' | 'mysql', adminUrl: string, urlOf: (db: string) => string): Promise<string> {
  if (kind === 'postgres') {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.query('DROP DATABASE IF EXISTS demo');
    await client.query('CREATE DATABASE demo');
    await client.end();
  } else {
    const conn = await mysql.createConnection({ uri: adminUrl });
    await conn.query('DROP DATABASE IF EXISTS demo');
    await conn.query('CREATE DATABASE demo');
    await conn.end();
  }
  return urlOf('demo');
}

async function seed(pgPool: pg.Pool, myPool: mysql.Pool): Promise<void> {
  await pgPool.query("DELETE FROM account; INSERT INTO account VALUES ('alice', 100)");
  for (const sql of [
    'DELETE FROM account',
    "INSERT INTO account VALUES ('bob', 0)",
    'DELETE FROM product',
    "INSERT INTO product VALUES ('widget', 10, 0)",
    'DELETE FROM wallet',
    "INSERT INTO wallet VALUES ('carol', 100, 0)",
    'DELETE FROM shipment',
    'DELETE FROM purchase',
  ]) {
    await myPool.query(sql);
  }
}

async function readState(pgPool: pg.Pool, myPool: mysql.Pool): Promise<State> {
  const one = async (sql: string) => Number(((await myPool.query(sql))[0] as Record<string, unknown>[])[0].v);
  return {
    alice: Number((await pgPool.query("SELECT balance FROM account WHERE name = 'alice'")).rows[0].balance),
    bob: await one("SELECT balance AS v FROM account WHERE name = 'bob'"),
    stock: await one("SELECT stock AS v FROM product WHERE sku = 'widget'"),
    reserved: await one("SELECT reserved AS v FROM product WHERE sku = 'widget'"),
    wallet: await one("SELECT balance AS v FROM wallet WHERE customer = 'carol'"),
    frozen: await one("SELECT frozen AS v FROM wallet WHERE customer = 'carol'"),
    shipped: await one('SELECT count(*) AS v FROM shipment'),
    purchases: await one('SELECT count(*) AS v FROM purchase'),
  };
}

interface Row {
  mode: string;
  what: string;
  gid: string;
  status: string;
  /** The rollback reason, as the branch said it. */
  reason: string;
  branches: string[];
  change: string;
  ok: boolean;
}

/** The app's warnings and errors on stderr, wrapped at {@link MAX_WIDTH} columns (the table goes to stdout). */
class DemoLogger implements LoggerService {
  log(): void {}
  warn(message: unknown, context?: string): void {
    this.print('warn', message, context);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.print('error', message, typeof rest[rest.length - 1] === 'string' ? (rest[rest.length - 1] as string) : undefined);
  }
  private print(level: string, message: unknown, context?: string): void {
    for (const part of wrap(`${level}${context ? ` [${context}]` : ''}: ${String(message)}`, MAX_WIDTH)) process.stderr.write(`${part}\n`);
  }
}

/** Widest line printed. */
const MAX_WIDTH = 120;

/**
 * One line per transaction (mode, what, status, rollback reason), then its gid, the branches DTM
 * called and the data before and after on indented lines; nothing wider than {@link MAX_WIDTH}.
 */
function printTable(rows: Row[]): void {
  const columns = ['mode', 'what', 'status', 'rollback reason'] as const;
  const cells = rows.map((r) => [r.mode, r.what, r.ok ? r.status : `${r.status} !`, r.reason]);
  const widths = columns.slice(0, 3).map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const reasonWidth = MAX_WIDTH - widths.reduce((sum, w) => sum + w + 2, 0);
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (i < 3 ? v.padEnd(widths[i]) : v.length > reasonWidth ? `${v.slice(0, reasonWidth - 1)}…` : v))
      .join('  ')
      .trimEnd();
  const indent = ' '.repeat(widths[0] + 2);
  const detail = (label: string, text: string) => {
    for (const [n, part] of wrap(text, MAX_WIDTH - indent.length - 10).entries()) console.log(`${indent}${(n === 0 ? label : '').padEnd(10)}${part}`);
  };
  console.log(line(columns));
  console.log(line([...widths.map((w) => '-'.repeat(w)), '-'.repeat(Math.min(reasonWidth, 40))]));
  rows.forEach((row, i) => {
    console.log(line(cells[i]));
    if (row.reason.length > reasonWidth) detail('reason', row.reason);
    detail('gid', row.gid);
    detail('branches', row.branches.join(', ') || '(none called)');
    detail('data', row.change);
  });
}

/** `text` in lines of at most `width` characters, broken after `, ` (or else a space) where it can be. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let rest = text;
  while (rest.length > width) {
    const comma = rest.lastIndexOf(', ', width - 1);
    const cut = comma > width / 2 ? comma : rest.lastIndexOf(' ', width);
    const at = cut > 0 ? cut + 1 : width;
    lines.push(rest.slice(0, at).trimEnd());
    rest = rest.slice(at).trimStart();
  }
  lines.push(rest);
  return lines;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
