import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { testRedis } from '../redis-client.js';
import { findBinary } from './binaries.js';
import { freePort, startProcess, waitUntil, type ManagedProcess, type RunDir } from './process.js';

/** Where the harness's Redis listens. */
export interface RedisInfo {
  host: string;
  port: number;
  /** `redis://host:port` */
  url: string;
}

/**
 * Starts a private Redis on a free port: loopback only, no persistence (no RDB snapshots, no AOF).
 * `name` (default `redis`) names its directory and log, for a second one; `cluster`: a one-node
 * Redis Cluster holding every hash slot (a script whose keys are in several slots answers CROSSSLOT).
 */
export async function startRedis(runDir: RunDir, options: { name?: string; cluster?: boolean } = {}): Promise<{ info: RedisInfo; process: ManagedProcess }> {
  const server = findBinary(['redis-server'], 'install the Redis server (Debian: apt-get install redis-server)');
  const name = options.name ?? 'redis';
  const dir = join(runDir.path, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // the cluster bus port, by default port + 10000, which can fall in Linux's ephemeral range and be taken
  // by an outgoing connection ('bind: Address already in use', Redis aborts): a free port of its own (Redis 7+)
  const cluster = options.cluster ? ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-port', String(await freePort())] : [];
  const proc = startProcess({
    name,
    command: server,
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', ...cluster],
    runDir,
    logFile: join(runDir.path, `${name}.log`),
  });
  const info: RedisInfo = { host: '127.0.0.1', port, url: `redis://127.0.0.1:${port}` };
  await waitUntil(name, () => ping(info), { timeoutMs: 15_000, process: proc });
  if (options.cluster) {
    const client = testRedis(info.url);
    try {
      await client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      await waitUntil(`${name} cluster`, async () => String(await client.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), { timeoutMs: 15_000, process: proc });
    } finally {
      client.disconnect();
    }
  }
  return { info, process: proc };
}

async function ping(info: RedisInfo): Promise<boolean> {
  const client = testRedis(info.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined); // refused while the server starts: the caller retries
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } finally {
    client.disconnect();
  }
}
