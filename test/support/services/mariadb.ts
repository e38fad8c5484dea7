import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { findBinary } from './binaries.js';
import { freePort, minimalEnv, startProcess, waitUntil, type ManagedProcess, type RunDir } from './process.js';

/** Where the harness's MariaDB listens, and the account the tests use (all privileges, XA included). */
export interface MariadbInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Connection string without a database (`mysql://user:password@host:port`). */
  adminUrl: string;
}

const TEST_USER = 'dtm';
const TEST_PASSWORD = 'dtm-test-password';

/**
 * Starts a private MariaDB (InnoDB, XA capable) on a free port with its data in the run directory,
 * and creates the test account. Durability is relaxed (flush once a second) for speed unless
 * `durable`; XA PREPARE still survives a client disconnect, which is what XA tests need.
 */
export async function startMariadb(
  runDir: RunDir,
  options: { durable?: boolean; name?: string } = {},
): Promise<{ info: MariadbInfo; process: ManagedProcess; restart(): Promise<ManagedProcess> }> {
  const hint = 'install MariaDB server binaries (Debian: apt-get install mariadb-server)';
  const server = findBinary(['mariadbd', 'mysqld'], hint);
  const installDb = findBinary(['mariadb-install-db', 'mysql_install_db'], hint);
  const name = options.name ?? 'mariadb';
  const dir = join(runDir.path, name);
  const data = join(dir, 'data');
  const socket = join(dir, 'mariadb.sock');
  // a tmpdir of its own: a MariaDB server deletes every '#sql*' file in its tmpdir when it starts (left by a
  // crashed server, it assumes), so with the default (/tmp) a file's own server starting (xa-mariadb-unapplied)
  // deleted the shared server's on-disk temporary tables under a running query ("Error on delete of
  // '/tmp/#sql-temptable-...MAI' (Errcode: 2 ...)")
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const runAs = process.getuid?.() === 0 ? 'root' : (process.env.USER ?? 'nobody');

  execFileSync(
    installDb,
    ['--no-defaults', `--datadir=${data}`, `--tmpdir=${tmp}`, '--auth-root-authentication-method=normal', '--skip-test-db', `--user=${runAs}`],
    { env: minimalEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const port = await freePort();
  const launch = () => startProcess({
    name,
    command: server,
    args: [
      '--no-defaults',
      `--datadir=${data}`,
      `--tmpdir=${tmp}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${socket}`,
      `--pid-file=${join(dir, 'mariadb.pid')}`,
      `--user=${runAs}`,
      '--skip-name-resolve',
      '--max-connections=500',
      '--innodb-buffer-pool-size=128M',
      '--innodb-log-file-size=64M',
      `--innodb-flush-log-at-trx-commit=${options.durable ? 1 : 2}`,
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_general_ci',
    ],
    runDir,
    logFile: join(runDir.path, `${name}.log`),
  });
  let proc = launch();
  await waitUntil(name, () => createTestUser(socket), { timeoutMs: 60_000, process: proc, intervalMs: 200 });
  const info: MariadbInfo = {
    host: '127.0.0.1',
    port,
    user: TEST_USER,
    password: TEST_PASSWORD,
    adminUrl: `mysql://${TEST_USER}:${encodeURIComponent(TEST_PASSWORD)}@127.0.0.1:${port}`,
  };
  /** Stops the server (a clean shutdown) and starts it again on the same data and port. */
  const restart = async () => {
    await proc.stop(30_000);
    proc = launch();
    await waitUntil(name, () => createTestUser(socket), { timeoutMs: 60_000, process: proc, intervalMs: 200 });
    return proc;
  };
  return { info, process: proc, restart };
}

/** Connection string for database `db` on the server described by `info`. */
export function mariadbUrl(info: MariadbInfo, db: string): string {
  return `${info.adminUrl}/${db}`;
}

async function createTestUser(socketPath: string): Promise<boolean> {
  const conn = await mysql.createConnection({ socketPath, user: 'root', connectTimeout: 1000 });
  try {
    await conn.query(`CREATE USER IF NOT EXISTS '${TEST_USER}'@'%' IDENTIFIED BY '${TEST_PASSWORD}'`);
    await conn.query(`GRANT ALL PRIVILEGES ON *.* TO '${TEST_USER}'@'%' WITH GRANT OPTION`);
    return true;
  } finally {
    await conn.end().catch(() => undefined);
  }
}
