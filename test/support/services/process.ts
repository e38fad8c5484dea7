import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freeLocalPort } from 'nestjs-dtm/testing';
import { DeadlineError, within } from '../deadline.js';
import { logEndText } from '../log-lines.js';

/** Where a run keeps its temp data: one directory per run, removed by its reaper. */
export interface RunDir {
  path: string;
  /** File the reaper reads: one process-group id per line. */
  pgidFile: string;
}

/**
 * The run's reaper, run with `bash -c`: waits until the owner process has ended (or the harness wrote
 * "<run dir>/done"), then stops every process group listed in "<run dir>/pgids" (SIGTERM, SIGKILL
 * after 5 s) and removes the run directory. So nothing the harness started outlives the run, whether
 * it ended normally, failed, got Ctrl-C or was killed. Embedded (not a file) so compiled copies of
 * the harness (the demo, benchmarks) find it too.
 */
const REAPER_SCRIPT = `
owner="$1"
dir="$2"
trap '' INT HUP
while kill -0 "$owner" 2>/dev/null && [ ! -e "$dir/done" ]; do sleep 0.3; done
alive() { kill -0 -- "-$1" 2>/dev/null; }
if [ -f "$dir/pgids" ]; then
  pgids=$(cat "$dir/pgids")
  for pg in $pgids; do alive "$pg" && kill -TERM -- "-$pg" 2>/dev/null; done
  for _ in $(seq 1 50); do
    left=0
    for pg in $pgids; do alive "$pg" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pg in $pgids; do alive "$pg" && kill -KILL -- "-$pg" 2>/dev/null; done
fi
rm -rf "$dir"
`;

/**
 * Creates the run's temp directory and starts its reaper: a detached shell that waits for
 * `ownerPid` to end (normal exit, crash, Ctrl-C or kill -9) and then kills every process group
 * registered in the directory and removes it. So no service can outlive the run.
 */
export function createRunDir(ownerPid = process.pid): RunDir {
  const path = mkdtempSync(join(tmpdir(), 'nestjs-dtm-'));
  chmodSync(path, 0o755); // services that run as another user (postgres) must reach their sub-directory
  const pgidFile = join(path, 'pgids');
  writeFileSync(pgidFile, '');
  const reaper = spawn('bash', ['-c', REAPER_SCRIPT, 'reaper', String(ownerPid), path], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
  return { path, pgidFile };
}

/** Tells the run's reaper that everything was stopped: it removes the directory and exits. */
export function finishRunDir(runDir: RunDir): void {
  writeFileSync(join(runDir.path, 'done'), '');
}

/** The run directory named by an existing harness (for processes started from a test). */
export function runDirFrom(path: string): RunDir {
  return { path, pgidFile: join(path, 'pgids') };
}

/** Environment variable naming the JSON file in which the global setup describes the running stack (in the run's directory). */
export const HARNESS_ENV = 'NESTJS_DTM_HARNESS';

/**
 * A free TCP port on 127.0.0.1 (nestjs-dtm/testing's `freeLocalPort`) that no other test file of this
 * run was given, whichever jest worker it ran in: each port is claimed by creating
 * "<run dir>/ports/<port>" exclusively. The shared DTM keeps one gRPC connection per address; once a
 * server at an address closed, that connection backs off its reconnects (up to 120 s), so a later
 * file's server given the same port was reached only after its test had given up. Outside a test
 * run (no harness: benchmarks, the demo) only `freeLocalPort`'s own once-per-process rule holds.
 */
export async function freePort(): Promise<number> {
  const harnessFile = process.env[HARNESS_ENV];
  if (!harnessFile) return freeLocalPort();
  const claims = join(dirname(harnessFile), 'ports');
  mkdirSync(claims, { recursive: true });
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await freeLocalPort();
    try {
      closeSync(openSync(join(claims, String(port)), 'wx'));
      return port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new Error(`no port left that this run has not used: 200 free ports in a row were claimed in ${claims}`);
}

/** Options for {@link startProcess}. */
export interface StartProcessOptions {
  name: string;
  command: string;
  args: string[];
  runDir: RunDir;
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Run as this user (needs root); used for PostgreSQL, which refuses to run as root. */
  user?: string;
  /** Signal that asks the process to shut down (default SIGTERM). */
  stopSignal?: NodeJS.Signals;
}

/** A server process started by the harness, in its own process group. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  readonly exited: Promise<string>;
  /** True once the process has ended. */
  hasExited(): boolean;
  /** The stop signal to the whole group, then SIGKILL after `graceMs`. Resolves once it has ended. */
  stop(graceMs?: number): Promise<void>;
  /** `kill -9` of the whole group, no warning (a crash). Resolves once it has ended. */
  kill(): Promise<void>;
  /** SIGSTOP to the whole group: it stops running (a frozen VM, a long pause) but keeps its sockets; {@link resume} continues it. */
  pause(): void;
  /** SIGCONT to the whole group. */
  resume(): void;
}

/**
 * Starts a long-running process detached in its own process group (so a terminal's Ctrl-C does not
 * reach it before the harness can stop it in order), with stdout and stderr appended to `logFile`,
 * and registers the group with the run's reaper.
 */
export function startProcess(options: StartProcessOptions): ManagedProcess {
  const { command, args } = options.user ? asUser(options.user, options.command, options.args) : options;
  const fd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? minimalEnv(),
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`could not start ${options.name} (${command})`);
  const pid = child.pid;
  appendFileSync(options.runDir.pgidFile, `${pid}\n`);
  let ended = false;
  const exited = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => {
      ended = true;
      resolve(signal ?? String(code));
    });
    child.on('error', (err) => {
      ended = true;
      resolve(`spawn error: ${err.message}`);
    });
  });
  child.unref();
  return {
    name: options.name,
    pid,
    logFile: options.logFile,
    exited,
    hasExited: () => ended,
    async stop(graceMs = 5000) {
      if (ended) return;
      child.ref(); // keep this process alive until the exit event arrives
      killGroup(pid, options.stopSignal ?? 'SIGTERM');
      killGroup(pid, 'SIGCONT'); // a paused process handles the stop signal once it runs
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      killGroup(pid, 'SIGKILL'); // children the leader left behind
    },
    async kill() {
      if (ended) return;
      child.ref();
      killGroup(pid, 'SIGKILL');
      await exited;
    },
    pause: () => killGroup(pid, 'SIGSTOP'),
    resume: () => killGroup(pid, 'SIGCONT'),
  };
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/** The command line that runs `command` as `user` (via setpriv; needs root). */
export function asUser(user: string, command: string, args: string[]): { command: string; args: string[] } {
  return { command: 'setpriv', args: [`--reuid=${user}`, `--regid=${user}`, `--init-groups`, '--', command, ...args] };
}

/** The environment given to servers: enough to run, nothing that could change their configuration. */
export function minimalEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: process.env.HOME ?? '/tmp', ...extra };
}

/**
 * Polls `probe` until it resolves truthy; fails with the process log tail if the process ends or time
 * runs out. Each probe has what is left of the time: one that never settles (a fetch to a port that
 * accepts and never answers) fails the wait at its deadline, and its signal aborts then.
 */
export async function waitUntil(
  what: string,
  probe: (signal: AbortSignal) => Promise<boolean>,
  options: { timeoutMs: number; process?: ManagedProcess; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (options.process?.hasExited()) {
      throw new Error(`${what}: the process ended (${await options.process.exited})\n${logTail(options.process.logFile)}`);
    }
    try {
      if (await within('the probe', Math.max(1, deadline - Date.now()), probe)) return;
    } catch (err) {
      // the last probe, cut short by the deadline, says less than an earlier probe's error
      if (!(err instanceof DeadlineError && lastError !== undefined)) lastError = err;
    }
    await sleep(options.intervalMs ?? 100);
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  const tail = options.process ? `\n${logTail(options.process.logFile)}` : '';
  throw new Error(`${what}: not ready after ${options.timeoutMs} ms${detail}${tail}`);
}

/** The last lines of a log file, for error messages. */
export function logTail(file: string, lines = 30): string {
  try {
    // its last 256 KiB at most: a child's log can be large, and this runs in a failing wait's message
    const text = logEndText(file, 256 * 1024).trimEnd().split('\n');
    return `--- last ${Math.min(lines, text.length)} lines of ${file} ---\n${text.slice(-lines).join('\n')}`;
  } catch {
    return `(no log at ${file})`;
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
