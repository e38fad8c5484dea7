// Where a benchmark's servers come from. By default, a stack of its own (test/support/services'
// startStack, as `npm run bench:*` always ran). With BENCH_HARNESS set to the JSON file in which a
// running test harness describes its stack (what jest's global setup writes, named by its
// NESTJS_DTM_HARNESS), the harness's DTM server and databases instead, and BENCH_DATABASE the
// existing, empty PostgreSQL and MariaDB database the benchmark may fill: how test/e2e/bench-smoke.spec.ts
// smoke-runs every benchmark without starting servers. Those servers are shared with the tests
// running at the same time, and keep the harness's settings (its DTM store, no fsync): their figures
// say that the benchmark runs, not how fast; the servers' own CPU time is not read there.
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { mariadbUrl } from '../test/support/services/mariadb.js';
import { postgresUrl } from '../test/support/services/postgres.js';
import { runDirFrom, type RunDir } from '../test/support/services/process.js';
import { startStack, type StackInfo, type StackOptions } from '../test/support/services/stack.js';

/** The environment variable naming a running test harness's stack file (harness mode). */
export const BENCH_HARNESS_ENV = 'BENCH_HARNESS';
/** The environment variable naming the database (PostgreSQL and MariaDB) a benchmark fills in harness mode. */
export const BENCH_DATABASE_ENV = 'BENCH_DATABASE';

/** The servers a benchmark runs against. */
export interface BenchStack {
  info: StackInfo;
  /** The servers' processes, whose CPU time benchmarks read; none on the harness's (shared: their CPU time is not the benchmark's). */
  processes: { name: string; pid: number }[];
  /**
   * Where the benchmark's own processes keep their files (logs, a DTM's directory): on the harness's servers a new
   * directory inside the harness's run directory, whose reaper still ends them, so that no name (chaos's `dtm-chaos`,
   * `chaos-bank.log`) is shared with a test file starting processes of the same name at the same time.
   */
  runDir: RunDir;
  /** Whether the servers are the test harness's (BENCH_HARNESS), not the benchmark's own. */
  shared: boolean;
  /** Stops the benchmark's own servers; leaves the harness's running. */
  stop(): Promise<void>;
}

/** The benchmark's own stack started with `options`, or the test harness's when BENCH_HARNESS names one. */
export async function benchStack(options: StackOptions = {}): Promise<BenchStack> {
  const file = process.env[BENCH_HARNESS_ENV];
  if (!file) {
    const stack = await startStack(options);
    return { info: stack.info, runDir: stack.runDir, processes: stack.processes, shared: false, stop: () => stack.stop() };
  }
  if (options.durable) throw new Error(`${BENCH_HARNESS_ENV}: the harness's databases run without fsync; pass --fast (or unset ${BENCH_HARNESS_ENV} for servers of the benchmark's own)`);
  const info = JSON.parse(readFileSync(file, 'utf8')) as StackInfo;
  for (const service of ['dtm', 'postgres', 'mariadb', 'redis'] as const) {
    if (options[service] !== false && !info[service]) throw new Error(`${BENCH_HARNESS_ENV}: the harness described in ${file} runs no ${service}`);
  }
  const harnessDir = runDirFrom(info.runDir);
  const runDir = { path: mkdtempSync(join(harnessDir.path, 'bench-')), pgidFile: harnessDir.pgidFile };
  return { info, runDir, processes: [], shared: true, stop: async () => undefined };
}

/**
 * In harness mode, the database the benchmark fills instead of creating one (BENCH_DATABASE: it must
 * exist and be empty on both PostgreSQL and MariaDB); undefined on the benchmark's own servers.
 */
export function harnessDatabase(stack: BenchStack): string | undefined {
  if (!stack.shared) return undefined;
  const database = process.env[BENCH_DATABASE_ENV];
  if (!database) throw new Error(`${BENCH_HARNESS_ENV} needs ${BENCH_DATABASE_ENV}: an empty database on the harness's PostgreSQL and MariaDB for the benchmark's tables`);
  return database;
}

/** How the benchmark's header names where its servers are. */
export function stackLabel(stack: BenchStack): string {
  return stack.shared ? "the test harness's servers (shared: a smoke run, not a measurement)" : 'servers of its own';
}

/**
 * The PostgreSQL and MariaDB URLs of the database a benchmark fills: on the harness's servers the
 * (empty) one BENCH_DATABASE names on both; on its own, PostgreSQL's `postgres` and a new `bench`
 * on MariaDB (created here).
 */
export async function benchDatabaseUrls(stack: BenchStack): Promise<{ pgUrl: string; myUrl: string }> {
  const database = harnessDatabase(stack);
  if (!database) {
    const myAdmin = await mysql.createConnection({ uri: stack.info.mariadb!.adminUrl });
    await myAdmin.query('CREATE DATABASE bench');
    await myAdmin.end();
  }
  return { pgUrl: postgresUrl(stack.info.postgres!, database ?? 'postgres'), myUrl: mariadbUrl(stack.info.mariadb!, database ?? 'bench') };
}
