// Shared by the benchmarks: a closed-loop load generator and a keep-alive POST.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';

/** Runs `one` from `workers` concurrent loops until `seconds` have passed; returns completed calls per second. */
export async function closedLoop(workers: number, seconds: number, one: () => Promise<void>): Promise<number> {
  const { completed, elapsedSeconds } = await closedLoopRun(workers, seconds, one);
  return completed / elapsedSeconds;
}

/** {@link closedLoop}, returning how many calls completed and over how long (s). */
export async function closedLoopRun(workers: number, seconds: number, one: () => Promise<void>): Promise<{ completed: number; elapsedSeconds: number }> {
  const deadline = Date.now() + seconds * 1000;
  let completed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < deadline) {
        await one();
        completed++;
      }
    }),
  );
  return { completed, elapsedSeconds: (performance.now() - started) / 1000 };
}

/** POSTs `body` (JSON) to 127.0.0.1:`port``path` on `agent`; resolves with the status code, the answer read and discarded. */
export function postJson(agent: http.Agent, port: number, path: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The median of `xs` (the upper one for an even count). */
export const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

/** The `q`-quantile of `xs` (0 <= q <= 1), interpolated between the nearest two (q = 0.5: the usual median). */
export function quantile(xs: number[], q: number): number {
  const sorted = [...xs].sort((x, y) => x - y);
  const at = (sorted.length - 1) * q;
  const below = Math.floor(at);
  return below + 1 < sorted.length ? sorted[below] + (sorted[below + 1] - sorted[below]) * (at - below) : sorted[below];
}

/**
 * Starts `argv` (`[executable, ...args]`) with `env` added; resolves with the process once it has
 * printed a line `port N` (its HTTP port) and, when it prints one, `grpc port N` before it. A Node
 * app gets the flags of `BENCH_NODE_ARGS` too (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`: Node
 * refuses them in NODE_OPTIONS), to profile the apps under the benchmark's own load.
 */
export function startAppProcess(argv: string[], env: Record<string, string>): Promise<{ child: ChildProcess; port: number; grpcPort?: number }> {
  const [command, ...args] = argv;
  if (command === process.execPath && process.env.BENCH_NODE_ARGS) args.unshift(...process.env.BENCH_NODE_ARGS.split(' ').filter(Boolean));
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let grpcPort: number | undefined;
  let pending = '';
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const grpc = /^grpc port (\d+)$/.exec(line);
        if (grpc) grpcPort = Number(grpc[1]);
        const http = /^port (\d+)$/.exec(line);
        if (http) resolve({ child, port: Number(http[1]), grpcPort });
      }
    });
    child.on('exit', (code) => reject(new Error(`${command} exited with ${code}`)));
  });
}

/**
 * Runs every start of `starts` at once (processes that load side by side start sooner than one
 * after the other), passes each one that started to `keep` in the order of `starts` (so that the
 * caller stops it), then throws the first failure, if any.
 */
export async function startTogether<T>(starts: (() => Promise<T>)[], keep: (started: T, index: number) => void): Promise<void> {
  const settled = await Promise.allSettled(starts.map((start) => start()));
  settled.forEach((result, index) => result.status === 'fulfilled' && keep(result.value, index));
  const failed = settled.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
}

/** CPU time (user + system) process `pid` has used so far, in microseconds; undefined where /proc is missing (not Linux). */
export function processCpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11], fields[12]: utime, stime (fields 14 and 15 of proc(5)), in clock ticks of 1/100 s on Linux
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}
