// `npm run demo`: starts what the sample app needs (a DTM server, PostgreSQL, MariaDB: the test
// harness's code) unless told to use running ones, starts the sample app, runs one transaction of
// each kind against it and prints what DTM recorded and what the databases hold, then stops
// everything it started.
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { FinalResult } from 'nestjs-dtm';
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
order the shop's contract refuses (its schema: a FAILURE, not a retry); a TCC
reservation that confirms and one that cancels; an outbox message; an XA transfer that commits and
one that rolls back; a workflow transfer that succeeds and one that is refused. Prints, per transaction, the gid, DTM's final status and branch statuses, and
the balances / stock before and after.

Options (each also from the environment variable in brackets):
  --dtm-url <url>     use this running DTM server (its server_url, e.g. http://localhost:36789/api/dtmsvr)
                      [DTM_SERVER_URL]; it must be able to reach this machine's loopback address
  --pg-url <url>      use this PostgreSQL database (needs max_prepared_transactions > 0 for XA) [PG_URL]
  --mysql-url <url>   use this MySQL / MariaDB database (mysql://user:password@host:port/db) [MYSQL_URL]
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
    options: { 'dtm-url': { type: 'string' }, 'pg-url': { type: 'string' }, 'mysql-url': { type: 'string' }, help: { type: 'boolean' } },
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
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
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
      const run = async (mode: string, what: string, expected: FinalResult['status'], show: (s: State) => string, action: () => Promise<FinalResult>) => {
        const before = await state();
        const final = await action();
        const after = await state();
        rows.push({ mode, what, gid: final.gid, status: final.status, branches: final.branches.map((b) => b.status).join(','), change: `${show(before)} -> ${show(after)}`, ok: final.status === expected });
      };
      const bank = (s: State) => `alice ${s.alice}, bob ${s.bob}`;
      const stock = (s: State) => `stock ${s.stock}, carol ${s.wallet}, shipped ${s.shipped}`;
      const reserve = (s: State) => `stock ${s.stock}+${s.reserved} reserved, carol ${s.wallet}+${s.frozen} frozen`;
      const outbox = (s: State) => `purchases ${s.purchases}, shipped ${s.shipped}`;

      await run('saga', 'transfer 30 alice -> bob', 'succeed', bank, () => transfers.saga('alice', 'bob', 30));
      await run('saga', 'checkout 2 widgets, ship to atlantis', 'failed', stock, () => shop.checkout(order('o-1', 2, 40, 'atlantis')));
      await run('saga', 'checkout -1 widgets (the contract refuses it)', 'failed', stock, () => shop.checkout(order('o-0', -1, 10)));
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
    } finally {
      await Promise.all([pgPool.end(), myPool.end()]);
    }
  } finally {
    await app.close();
    await stack?.stop();
  }
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
  branches: string;
  change: string;
  ok: boolean;
}

function printTable(rows: Row[]): void {
  const columns = ['mode', 'what', 'gid', 'status', 'branches', 'before -> after'] as const;
  const cells = rows.map((r) => [r.mode, r.what, r.gid, r.ok ? r.status : `${r.status} !`, r.branches, r.change]);
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (values: readonly string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of cells) console.log(line(row));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
