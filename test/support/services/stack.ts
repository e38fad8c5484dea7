import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { startDtm, type DtmInfo, type DtmStore } from './dtm.js';
import { startMariadb, type MariadbInfo } from './mariadb.js';
import { startPostgres, type PostgresInfo } from './postgres.js';
import { createRunDir, finishRunDir, type ManagedProcess, type RunDir } from './process.js';
import { startRedis, type RedisInfo } from './redis.js';

/** Everything a started stack offers, as plain data (it is written to a JSON file for test workers). */
export interface StackInfo {
  /** The run's temp directory (removed when the run ends). */
  runDir: string;
  /** Absent when started with `dtm: false`. */
  dtm?: DtmInfo;
  postgres?: PostgresInfo;
  mariadb?: MariadbInfo;
  redis?: RedisInfo;
}

/** Which services {@link startStack} starts (default: all). */
export interface StackOptions {
  dtm?: boolean;
  postgres?: boolean;
  mariadb?: boolean;
  redis?: boolean;
  dtmStore?: DtmStore;
  /** Databases with their default durability (fsync at commit) instead of the fast test settings. */
  durable?: boolean;
  /** The process whose end makes the reaper stop everything (default: this process). */
  ownerPid?: number;
}

/** A running stack and the way to stop it. */
export interface Stack {
  info: StackInfo;
  runDir: RunDir;
  processes: ManagedProcess[];
  /**
   * Stops every service (DTM first, so it does not log errors about its store going away), copies
   * the server logs to `keepLogsIn` if given (replacing what it held; the logs of the processes test
   * files started in the run directory go to its `files/`), and has the reaper remove the run directory.
   */
  stop(options?: { keepLogsIn?: string }): Promise<void>;
}

/**
 * Starts the DTM server and the databases (or those asked for) in one temp directory, in parallel where they do not
 * depend on each other. If any fails, the ones already started are stopped before the error is thrown.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const want = { dtm: true, postgres: true, mariadb: true, redis: true, ...options };
  const store = options.dtmStore ?? 'boltdb';
  if (store === 'redis') want.redis = true;
  if (store === 'mysql') want.mariadb = true;
  const runDir = createRunDir(options.ownerPid);
  const processes: ManagedProcess[] = [];
  const started = <T extends { process: ManagedProcess }>(p: Promise<T>): Promise<T> =>
    p.then((r) => {
      processes.push(r.process);
      return r;
    });
  const stop = async (stopOptions: { keepLogsIn?: string } = {}) => {
    try {
      for (const proc of [...processes].reverse()) await proc.stop();
      if (stopOptions.keepLogsIn) copyLogs(processes, runDir.path, stopOptions.keepLogsIn);
    } finally {
      finishRunDir(runDir);
    }
  };
  try {
    const settled = await Promise.allSettled([
      want.redis ? started(startRedis(runDir)) : undefined,
      want.postgres ? started(startPostgres(runDir, { durable: options.durable })) : undefined,
      want.mariadb ? started(startMariadb(runDir, { durable: options.durable })) : undefined,
    ]);
    const failure = settled.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    const [redis, postgres, mariadb] = settled.map((r) => (r.status === 'fulfilled' ? r.value : undefined)) as [
      Awaited<ReturnType<typeof startRedis>> | undefined,
      Awaited<ReturnType<typeof startPostgres>> | undefined,
      Awaited<ReturnType<typeof startMariadb>> | undefined,
    ];
    const dtm = want.dtm ? await started(startDtm(runDir, { store, redis: redis?.info, mariadb: mariadb?.info })) : undefined;
    return {
      info: { runDir: runDir.path, dtm: dtm?.info, postgres: postgres?.info, mariadb: mariadb?.info, redis: redis?.info },
      runDir,
      processes,
      stop,
    };
  } catch (err) {
    await Promise.allSettled(processes.map((p) => p.stop()));
    finishRunDir(runDir);
    throw err;
  }
}

/** Copies the logs of the stack's `processes` to `target`, emptied first, and the other `*.log` files of `runDir` to `target/files/`. */
function copyLogs(processes: ManagedProcess[], runDir: string, target: string): void {
  rmSync(target, { recursive: true, force: true }); // no log of an earlier run left beside this run's
  mkdirSync(target, { recursive: true });
  const ours = new Set(processes.map((p) => p.logFile));
  for (const file of ours) {
    if (existsSync(file)) copyFileSync(file, join(target, basename(file)));
  }
  // the servers and processes test files started in the run directory (DTM servers of their own, participants)
  const others = readdirSync(runDir).filter((name) => name.endsWith('.log') && !ours.has(join(runDir, name)));
  if (others.length > 0) mkdirSync(join(target, 'files'));
  for (const name of others) copyFileSync(join(runDir, name), join(target, 'files', name));
}
