import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { expect } from '@jest/globals';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { testRedis } from './redis-client.js';
import { harness } from './harness.js';
import { mariadbUrl } from './services/mariadb.js';
import { postgresUrl } from './services/postgres.js';

/** One test file's own databases on the shared servers, so files can run in parallel. */
export interface FileDatabases {
  /** Name shared by the PostgreSQL and MariaDB databases (`t_<file>_<hash>`). */
  name: string;
  postgres: { database: string; url: string };
  mariadb: { database: string; url: string; config: mysql.ConnectionOptions };
  /** Every Redis key this file uses starts with `keyPrefix`. */
  redis: { url: string; keyPrefix: string };
}

/**
 * Creates (fresh: dropped first if a previous run left it) this test file's PostgreSQL and MariaDB
 * databases and clears its Redis key prefix. The name comes from the test file's path unless given.
 */
export async function fileDatabases(name = nameFromTestPath()): Promise<FileDatabases> {
  const h = harness();
  if (!h.postgres || !h.mariadb || !h.redis) throw new Error('the harness was started without the databases');
  const admin = new pg.Client({ connectionString: h.postgres.adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const my = await mysql.createConnection({ host: h.mariadb.host, port: h.mariadb.port, user: h.mariadb.user, password: h.mariadb.password });
  try {
    await my.query(`DROP DATABASE IF EXISTS ${name}`);
    await my.query(`CREATE DATABASE ${name}`);
  } finally {
    await my.end();
  }
  const keyPrefix = `${name}:`;
  const redis = testRedis(h.redis.url);
  try {
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
  return {
    name,
    postgres: { database: name, url: postgresUrl(h.postgres, name) },
    mariadb: {
      database: name,
      url: mariadbUrl(h.mariadb, name),
      config: { host: h.mariadb.host, port: h.mariadb.port, user: h.mariadb.user, password: h.mariadb.password, database: name },
    },
    redis: { url: h.redis.url, keyPrefix },
  };
}

function nameFromTestPath(): string {
  const testPath = expect.getState().testPath;
  if (!testPath) throw new Error('fileDatabases() outside a test file: pass a name');
  const slug = basename(testPath)
    .replace(/\.(e2e-)?spec\.ts$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .slice(0, 30);
  const hash = createHash('sha256').update(testPath).digest('hex').slice(0, 6);
  return `t_${slug}_${hash}`;
}

/**
 * Runs `finish` (an XA COMMIT | ROLLBACK from another connection than the one that prepared the XA
 * transaction) once MariaDB has detached that transaction from the closed session `threadId` (its
 * connection's `threadId`). Until then other connections' XA COMMIT | ROLLBACK answer XAER_NOTA;
 * and one that arrives while the server is still detaching it is acknowledged without being
 * applied (MariaDB 10.11: the id is free a moment before InnoDB lets go of the transaction, which
 * then stays prepared with its locks, out of XA RECOVER, until the server restarts). So this waits
 * until the session has left the process list and then INFORMATION_SCHEMA.INNODB_TRX shows no
 * transaction of it (read with `config`'s account, which needs PROCESS, as the harness's has; that
 * table is a snapshot taken when it was last read over 0.1 s before, hence the pauses), then runs
 * `finish`, repeated while it answers XAER_NOTA. Gives up after `timeoutMs`.
 */
export async function onceDetached<T>(config: mysql.ConnectionOptions, threadId: number, finish: () => Promise<T>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const watcher = await mysql.createConnection(config);
  try {
    const count = async (sql: string) => Number((await watcher.query<mysql.RowDataPacket[]>(sql, [threadId]))[0][0].n);
    const stillThere = async () =>
      (await count('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?')) > 0 ||
      (await pause(150), await count('SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ?')) > 0;
    while (await stillThere()) {
      if (Date.now() > deadline) throw new Error(`onceDetached: session ${threadId} or its transaction still attached after ${timeoutMs} ms`);
      await pause(10);
    }
  } finally {
    await watcher.end();
  }
  for (;;) {
    try {
      return await finish();
    } catch (err) {
      if (!/XAER_NOTA/.test(String((err as Error)?.message)) || Date.now() > deadline) throw err;
      await pause(5);
    }
  }
}

/** Another session holding the row lock of `account` row `id` (table `account`) in `dbs`'s PostgreSQL or MariaDB database until `release()`. */
export async function holdRowLock(dbs: FileDatabases, store: 'pg' | 'mysql', id: number): Promise<{ release(): Promise<void> }> {
  if (store === 'pg') {
    const client = new pg.Client({ connectionString: dbs.postgres.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT balance FROM account WHERE id = $1 FOR UPDATE', [id]);
    return { release: async () => void (await client.query('ROLLBACK'), await client.end()) };
  }
  const connection = await mysql.createConnection(dbs.mariadb.config);
  await connection.beginTransaction();
  await connection.query('SELECT balance FROM account WHERE id = ? FOR UPDATE', [id]);
  return { release: async () => void (await connection.rollback(), await connection.end()) };
}
