// Types of jest-guard.mjs, for the tests that import it.

/** How a guarded run ended. */
export interface GuardedEnd {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  error?: Error;
}

/** Runs `command args` (stdio inherited); past `timeoutMs`, prints {@link hangReport} and kills it. */
export function runGuarded(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number; progressFile: string; root?: string },
): Promise<GuardedEnd>;

/** What the guard prints when it stops jest: the files running, their test, failures so far, the last lines of the run dir's logs. */
export function hangReport(progressFile: string, options?: { root?: string; now?: number }): string;

/** The last lines of `file`, read from its end only, each cut. */
export function logTail(file: string, lines?: number): string;
