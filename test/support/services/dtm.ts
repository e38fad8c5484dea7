import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { dtmTestServerConfig, waitForDtmServer } from 'nestjs-dtm/testing';
import { DTM_VERSION, dtmBinaryPath, isExecutable } from './binaries.js';
import { freePort, logTail, startProcess, minimalEnv, type ManagedProcess, type RunDir } from './process.js';
import type { MariadbInfo } from './mariadb.js';
import type { PostgresInfo } from './postgres.js';
import type { RedisInfo } from './redis.js';

/** Where the harness's DTM server listens and what it runs with. */
export interface DtmInfo {
  /** Base URL of the HTTP port, e.g. `http://127.0.0.1:40123`. */
  httpUrl: string;
  /** The URL SDKs call `server_url`: `<httpUrl>/api/dtmsvr`. */
  serverUrl: string;
  /** `host:port` of the gRPC API. */
  grpcAddress: string;
  /** What `/api/dtmsvr/version` answers. */
  version: string;
  store: DtmStore;
  /** Server configuration file the harness generated. */
  configFile: string;
  /** The server's log (stdout and stderr). */
  logFile: string;
}

/**
 * Storage engine of the DTM server: boltdb in the temp dir (default), the harness's Redis, the
 * harness's MariaDB (database `dtm`, the store of DTM's own benchmark), or a PostgreSQL database
 * (schema `dtm` of `postgresDb`); a SQL store's tables are created by DTM's `-r` from the SQL files
 * of its Go module.
 */
export type DtmStore = 'boltdb' | 'redis' | 'mysql' | 'postgres';

/** Options for {@link startDtm}. */
export interface StartDtmOptions {
  store?: DtmStore;
  /** Required when `store` is `redis`. */
  redis?: RedisInfo;
  /** The prefix of DTM's keys in that Redis (default `{dtm}`): servers sharing one Redis need prefixes of their own. */
  redisPrefix?: string;
  /** Required when `store` is `mysql`. */
  mariadb?: MariadbInfo;
  /**
   * The MariaDB database of a `mysql` store (default `dtm`, the one DTM's schema script names, which
   * DTM's `-r` drops and creates): another (a file's own, from `fileDatabases()`: no lock needed) gets
   * DTM's tables from that script by the harness, its `dtm.` read as this name.
   */
  mariadbDb?: string;
  /** Required when `store` is `postgres`, with `postgresDb`. */
  postgres?: PostgresInfo;
  /** The existing PostgreSQL database of a `postgres` store (DTM's tables go to its schema `dtm`). */
  postgresDb?: string;
  /** A SQL store's tables are dropped and created again (DTM's `-r`; default true): false for a restart on what DTM stored. */
  resetSqlStore?: boolean;
  /** Seconds the cron sleeps when no transaction is due (DTM default 3; the harness uses 1). */
  cronIntervalSeconds?: number;
  /** Extra top-level keys of DTM's config file (e.g. `{ RequestTimeout: 5 }`). */
  extraConfig?: Record<string, unknown>;
  /** Sub-directory of the run dir (lets one run start several servers). */
  name?: string;
  /** More environment variables of DTM's process (e.g. `PGAPPNAME`: the application name of its PostgreSQL sessions). */
  env?: Record<string, string>;
}

/** Starts the real DTM server v1.19.0 with a generated config on free ports; ready when `/api/ping` answers. */
export async function startDtm(runDir: RunDir, options: StartDtmOptions = {}): Promise<{ info: DtmInfo; process: ManagedProcess }> {
  const binary = dtmBinaryPath();
  if (!isExecutable(binary)) {
    throw new Error(`DTM server binary not found at ${binary}: run "bash scripts/setup.sh" (npm test does it) or set DTM_BINARY`);
  }
  const name = options.name ?? 'dtm';
  const store = options.store ?? 'boltdb';
  const dir = join(runDir.path, name);
  mkdirSync(dir, { recursive: true });
  // the ports of extraConfig (a restart on the ports of an earlier run), else free ones
  const httpPort = (options.extraConfig?.HttpPort as number | undefined) ?? (await freePort());
  const grpcPort = (options.extraConfig?.GrpcPort as number | undefined) ?? (await freePort());
  if (store === 'mysql') {
    // DTM's -r connects to its database before creating the tables in it
    const conn = await mysql.createConnection({ host: options.mariadb!.host, port: options.mariadb!.port, user: options.mariadb!.user, password: options.mariadb!.password });
    try {
      await conn.query(`CREATE DATABASE IF NOT EXISTS ${mariadbDbOf(options)}`);
      if (ownMariadbDb(options) && options.resetSqlStore !== false) {
        // DTM's -r would create the tables in `dtm`: its script's statements run here, in the database given
        const script = readFileSync(join(dtmModuleDir(), 'sqls', 'dtmsvr.storage.mysql.sql'), 'utf8');
        for (const statement of script.split(';').map((s) => s.trim())) {
          if (statement && !/^CREATE DATABASE/i.test(statement)) await conn.query(statement.replace(/\bdtm\./g, `${mariadbDbOf(options)}.`));
        }
      }
    } finally {
      await conn.end();
    }
  }
  if (store === 'postgres') {
    // -r creates DTM's tables in the schema of its connection's search_path, which must exist
    const client = new pg.Client({ host: options.postgres!.host, port: options.postgres!.port, user: options.postgres!.user, password: options.postgres!.password, database: options.postgresDb });
    await client.connect();
    await client.query('CREATE SCHEMA IF NOT EXISTS dtm').finally(() => client.end());
  }
  const sqlStore = store === 'mysql' || store === 'postgres';
  const configFile = join(dir, 'dtm.yml');
  // the configuration nestjs-dtm/testing's startDtmServer writes, with the harness's store
  writeFileSync(configFile, dtmTestServerConfig({ http: httpPort, grpc: grpcPort }, { ...options, store: storeConfig(store, options) }));
  const logFile = join(runDir.path, `${name}.log`);
  // boltdb keeps its file in the working directory: the server runs in its own temp directory; for a
  // SQL store it runs in its Go module's directory, whose sqls/ its -r (create the schema) reads.
  // SIGINT, not SIGTERM: a SIGTERM that arrives before DTM's main has installed its handler is caught
  // by go-zero's (a dependency) graceful-shutdown handler, which only re-raises it 5.5 s later.
  const proc = startProcess({
    name,
    command: binary,
    args: sqlStore && options.resetSqlStore !== false && !ownMariadbDb(options) ? ['-c', configFile, '-r'] : ['-c', configFile],
    cwd: sqlStore ? dtmModuleDir() : dir,
    env: minimalEnv(options.env),
    runDir,
    logFile,
    stopSignal: 'SIGINT',
  });
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  let version: string;
  try {
    version = await waitForDtmServer(httpUrl, 30_000, () => (proc.hasExited() ? 'it exited' : undefined));
  } catch (err) {
    await proc.stop();
    throw new Error(`dtm (${binary}): ${(err as Error).message}; run "bash scripts/setup.sh" to rebuild it\n${logTail(logFile)}`, { cause: err });
  }
  return {
    info: { httpUrl, serverUrl: `${httpUrl}/api/dtmsvr`, grpcAddress: `127.0.0.1:${grpcPort}`, version, store, configFile, logFile },
    process: proc,
  };
}

/** The MariaDB database of a `mysql` store. */
const mariadbDbOf = (options: StartDtmOptions): string => options.mariadbDb ?? 'dtm';
/** Whether a `mysql` store's tables are in a database other than DTM's own `dtm` (the harness creates them). */
const ownMariadbDb = (options: StartDtmOptions): boolean => (options.store ?? 'boltdb') === 'mysql' && mariadbDbOf(options) !== 'dtm';

function storeConfig(store: DtmStore, options: StartDtmOptions): Record<string, unknown> {
  if (store === 'boltdb') return { Driver: 'boltdb' };
  if (store === 'mysql') {
    const db = options.mariadb;
    if (!db) throw new Error('the mysql DTM store needs a running MariaDB (pass options.mariadb)');
    return { Driver: 'mysql', Host: db.host, Port: db.port, User: db.user, Password: db.password, Db: mariadbDbOf(options) };
  }
  if (store === 'postgres') {
    const db = options.postgres;
    if (!db || !options.postgresDb) throw new Error('the postgres DTM store needs a running PostgreSQL and a database of it (pass options.postgres and options.postgresDb)');
    // DTM's DSN is 'host=.. user=.. password=%s dbname=..': lib/pq reads an empty password as the
    // next field ("dbname=..."), and connects to the user's database; trust authentication ignores it
    return { Driver: 'postgres', Host: db.host, Port: db.port, User: db.user, Password: db.password || 'unused', Db: options.postgresDb, Schema: 'dtm' };
  }
  const redis = options.redis;
  if (!redis) throw new Error('the redis DTM store needs a running Redis (pass options.redis)');
  return { Driver: 'redis', Host: redis.host, Port: redis.port, User: '', Password: '', RedisPrefix: options.redisPrefix ?? '{dtm}' };
}

/** The directory of DTM's Go module in the module cache (scripts/setup.sh downloads it): its SQL files and its protos. */
export function dtmModuleDir(): string {
  const cache = execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
  const dir = join(cache, 'github.com', 'dtm-labs', `dtm@${DTM_VERSION}`);
  if (!existsSync(join(dir, 'sqls', 'dtmsvr.storage.mysql.sql'))) {
    throw new Error(`DTM's Go module (its SQL files and protos) is not in the Go module cache at ${dir}: run "bash scripts/setup.sh"`);
  }
  return dir;
}

/** A DTM server {@link startDtm} started, and the options it was started with. */
export interface RunningDtm {
  info: DtmInfo;
  process: ManagedProcess;
}

/**
 * Stops `dtm` (SIGINT, or `kill -9` with `hard`) and, after `downMs`, starts it again with the same
 * options, ports and store (boltdb: the same file in the same directory, so what it stored
 * survives): a DTM restart as its clients see it. Resolves with the new process.
 */
export async function restartDtm(runDir: RunDir, dtm: RunningDtm, options: StartDtmOptions = {}, restart: { hard?: boolean; downMs?: number } = {}): Promise<RunningDtm> {
  await stopDtm(dtm, restart.hard);
  if (restart.downMs) await new Promise((resolve) => setTimeout(resolve, restart.downMs));
  return startDtmAgain(runDir, dtm, options);
}

/** Stops `dtm`: SIGINT (its graceful stop), or SIGKILL of its process group with `hard`. */
export async function stopDtm(dtm: RunningDtm, hard = false): Promise<void> {
  await (hard ? dtm.process.kill() : dtm.process.stop());
}

/** Starts a stopped `dtm` again with `options` (those it was started with), on its ports and store (a SQL store's tables kept: no `-r`). */
export async function startDtmAgain(runDir: RunDir, dtm: RunningDtm, options: StartDtmOptions = {}): Promise<RunningDtm> {
  const httpPort = Number(new URL(dtm.info.httpUrl).port);
  const grpcPort = Number(dtm.info.grpcAddress.split(':').pop());
  return startDtm(runDir, { ...options, store: dtm.info.store, resetSqlStore: false, extraConfig: { ...options.extraConfig, HttpPort: httpPort, GrpcPort: grpcPort } });
}
