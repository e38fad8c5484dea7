import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { findBinary } from './binaries.js';
import { asUser, freePort, startProcess, waitUntil, minimalEnv, type ManagedProcess, type RunDir } from './process.js';

/** Where the harness's PostgreSQL listens; `url(db)` gives a connection string for one database. */
export interface PostgresInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Connection string of the `postgres` maintenance database. */
  adminUrl: string;
}

/** `max_prepared_transactions` of the private instance (XA needs it > 0). */
export const PG_MAX_PREPARED_TRANSACTIONS = 64;

/**
 * Starts a private PostgreSQL on a free port with its data in the run directory, set up for tests:
 * trust authentication on 127.0.0.1 only, `max_prepared_transactions` > 0 for XA, no fsync unless
 * `durable` (benchmarks compare with figures measured on durable databases). `name` names its directory
 * and log (default `postgres`: another name for a second instance in one run); `maxPreparedTransactions`
 * replaces {@link PG_MAX_PREPARED_TRANSACTIONS} (0: PostgreSQL's own default, XA disabled).
 * As root it runs as the `postgres` user (or `nobody`), since PostgreSQL refuses to run as root.
 */
export async function startPostgres(
  runDir: RunDir,
  options: { durable?: boolean; name?: string; maxPreparedTransactions?: number } = {},
): Promise<{ info: PostgresInfo; process: ManagedProcess }> {
  const hint = 'install PostgreSQL server binaries (Debian: apt-get install postgresql)';
  const initdb = findBinary(['initdb'], hint);
  const postgres = findBinary(['postgres'], hint);
  const name = options.name ?? 'postgres';
  const dir = join(runDir.path, name);
  const data = join(dir, 'data');
  mkdirSync(dir, { recursive: true });
  const user = process.getuid?.() === 0 ? serviceUser() : undefined;
  if (user) chownTo(dir, user);

  const port = await freePort();
  const logFile = join(runDir.path, `${name}.log`);
  const initArgs = ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'];
  const init = user ? asUser(user, initdb, initArgs) : { command: initdb, args: initArgs };
  execFileSync(init.command, init.args, {
    env: minimalEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = startProcess({
    name,
    command: postgres,
    args: [
      '-D', data,
      '-p', String(port),
      '-h', '127.0.0.1',
      '-k', dir,
      '-c', `max_prepared_transactions=${options.maxPreparedTransactions ?? PG_MAX_PREPARED_TRANSACTIONS}`,
      '-c', 'max_connections=300',
      '-c', 'shared_buffers=64MB',
      // tests: no durability, for speed; benchmarks: PostgreSQL's defaults (fsync at every commit)
      ...(options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    ],
    runDir,
    logFile,
    user,
  });
  const info: PostgresInfo = {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: '',
    adminUrl: postgresUrl({ host: '127.0.0.1', port, user: 'postgres', password: '' }, 'postgres'),
  };
  await waitUntil('postgres', () => canConnect(info.adminUrl), { timeoutMs: 30_000, process: proc });
  return { info, process: proc };
}

/** Connection string for database `db` on the server described by `info`. */
export function postgresUrl(info: Pick<PostgresInfo, 'host' | 'port' | 'user' | 'password'>, db: string): string {
  const auth = info.password ? `${info.user}:${encodeURIComponent(info.password)}` : info.user;
  return `postgres://${auth}@${info.host}:${info.port}/${db}`;
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function serviceUser(): string {
  for (const name of ['postgres', 'nobody']) {
    try {
      execFileSync('id', ['-u', name], { stdio: 'ignore' });
      return name;
    } catch {
      // try the next one
    }
  }
  throw new Error('PostgreSQL cannot run as root and neither a "postgres" nor a "nobody" user exists');
}

function chownTo(path: string, user: string): void {
  const uid = Number(execFileSync('id', ['-u', user]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', user]).toString().trim());
  chownSync(path, uid, gid);
}
