import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { findBinary } from './binaries.js';
import { freePort, startProcess, waitUntil, type ManagedProcess, type RunDir } from './process.js';

/** Where the harness's Redis listens. */
export interface RedisInfo {
  host: string;
  port: number;
  /** `redis://host:port` */
  url: string;
}

/** Starts a private Redis on a free port: loopback only, no persistence (no RDB snapshots, no AOF). */
export async function startRedis(runDir: RunDir): Promise<{ info: RedisInfo; process: ManagedProcess }> {
  const server = findBinary(['redis-server'], 'install the Redis server (Debian: apt-get install redis-server)');
  const dir = join(runDir.path, 'redis');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const proc = startProcess({
    name: 'redis',
    command: server,
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'],
    runDir,
    logFile: join(runDir.path, 'redis.log'),
  });
  const info: RedisInfo = { host: '127.0.0.1', port, url: `redis://127.0.0.1:${port}` };
  await waitUntil('redis', () => ping(info), { timeoutMs: 15_000, process: proc });
  return { info, process: proc };
}

async function ping(info: RedisInfo): Promise<boolean> {
  const client = new Redis({ host: info.host, port: info.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined); // refused while the server starts: the caller retries
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } finally {
    client.disconnect();
  }
}
