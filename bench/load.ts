// Shared by the benchmarks: a closed-loop load generator and a keep-alive POST.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';

/** Runs `one` from `workers` concurrent loops until `seconds` have passed; returns completed calls per second. */
export async function closedLoop(workers: number, seconds: number, one: () => Promise<void>): Promise<number> {
  const deadline = Date.now() + seconds * 1000;
  let completed = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < deadline) {
        await one();
        completed++;
      }
    }),
  );
  return completed / ((Date.now() - started) / 1000);
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

/** Starts `node script ...args` with `env` added; resolves with the process once it prints `port N`. */
export function startAppProcess(script: string, args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      const match = /port (\d+)/.exec(chunk.toString());
      if (match) resolve({ child, port: Number(match[1]) });
    });
    child.on('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}
