// run-jest.mjs's whole-run guard: runs jest and, when it outlives its time, says where it stood
// before killing it: the test files still running (from test/support/progress-reporter.js's file),
// the test each one was at and for how long, their failures so far, and the last lines of the
// servers' logs the harness keeps in its run dir (the DTM servers', the databases', the Go peer's).
// Read before the kill: once jest is gone, the run's reaper removes that directory.
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';

/** Lines shown of each log. */
const TAIL_LINES = 40;
/** Bytes read from a log's end at most: the shared DTM log reaches hundreds of MB (never read whole). */
const TAIL_BYTES = 256 * 1024;
/** Characters shown of a line: DTM logs whole payloads, lines of megabytes. */
const LINE_CHARS = 400;
/** Logs shown at most, the last written first. */
const MAX_LOGS = 12;

/**
 * Runs `command args` (stdio inherited) and resolves with how it ended. Past `timeoutMs`, prints
 * {@link hangReport} of `progressFile` and kills it (SIGKILL): `timedOut` is then true.
 */
export function runGuarded(command, args, { cwd, env, timeoutMs, progressFile, root = cwd }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: 'inherit' });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.stdout.write(hangReport(progressFile, { root }));
      } finally {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ status: null, signal: null, timedOut, error });
    });
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, timedOut });
    });
  });
}

/**
 * What the guard prints when it stops jest: each test file running (path relative to `root`), the
 * test it is at and since when (or "in a hook, between tests"), how many it finished and failed and
 * its first failures; then the last {@link TAIL_LINES} lines of each log of the harness's run dir.
 */
export function hangReport(progressFile, { root = process.cwd(), now = Date.now() } = {}) {
  const out = ['', '--- the run guard stopped jest; where it stood ---'];
  let progress;
  try {
    progress = JSON.parse(readFileSync(progressFile, 'utf8'));
  } catch {
    out.push(`(no progress recorded at ${progressFile}: jest had not started a test file)`);
  }
  const running = progress?.running ?? [];
  if (progress && running.length === 0) out.push('no test file was running (jest hung after its last file: its global teardown, or a handle left open)');
  for (const entry of running) {
    const file = relative(root, entry.file) || entry.file;
    out.push(`still running: ${file} (for ${seconds(now - entry.since)}; ${entry.done} tests finished, ${entry.failed} failed)`);
    out.push(entry.test ? `  at the test "${entry.test}" for ${seconds(now - entry.testSince)}` : '  in a hook (beforeAll / beforeEach / afterEach / afterAll) or between tests');
    for (const failure of entry.failures ?? []) out.push(`  failed: ${failure}`);
  }
  for (const log of harnessLogs(progress?.harness)) out.push(logTail(log));
  out.push('--- end of the guard report ---', '');
  return out.join('\n');
}

/** The logs of the harness's run dir (named by its harness.json), the last written first. */
function harnessLogs(harnessFile) {
  if (!harnessFile) return [];
  const dir = dirname(harnessFile);
  try {
    return readdirSync(dir)
      .filter((name) => name.endsWith('.log'))
      .map((name) => join(dir, name))
      .map((file) => ({ file, mtime: statSync(file).mtimeMs }))
      .sort((a, b) => b.mtime - a.mtime)
      .slice(0, MAX_LOGS)
      .map((l) => l.file);
  } catch {
    return [];
  }
}

/** The last lines of `file`, read from its last {@link TAIL_BYTES} bytes only, each cut to {@link LINE_CHARS}. */
export function logTail(file, lines = TAIL_LINES) {
  let fd;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const from = Math.max(0, size - TAIL_BYTES);
    const bytes = Buffer.alloc(size - from);
    const read = readSync(fd, bytes, 0, bytes.length, from);
    let text = bytes.toString('utf8', 0, read).split('\n');
    if (from > 0 && text.length > 1) text = text.slice(1); // the first one is the end of a line begun before
    if (text.at(-1) === '') text.pop();
    const shown = text.slice(-lines).map((l) => (l.length > LINE_CHARS ? `${l.slice(0, LINE_CHARS)} … (${l.length} characters)` : l));
    return [`--- last ${shown.length} lines of ${basename(file)} (${file}, ${size} bytes) ---`, ...shown].join('\n');
  } catch (err) {
    return `--- ${file}: not readable (${err.message}) ---`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** `ms` as seconds, for the report. */
function seconds(ms) {
  return Number.isFinite(ms) ? `${Math.round(ms / 1000)} s` : '?';
}
