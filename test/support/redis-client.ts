// The one way a test (or the harness) makes an ioredis client: with a command timeout. Without
// one, ioredis waits for ever on a Redis that accepts a connection and never answers, and the test
// is held to jest's 60 s timeout with nothing naming Redis; with it, the command fails
// ('Command timed out'). ESLint refuses `new Redis(...)` anywhere else in test/.
import { Redis, type RedisOptions } from 'ioredis';

/** How long a test's Redis command waits for its answer before it fails with 'Command timed out' (ms). */
export const TEST_REDIS_COMMAND_TIMEOUT_MS = 10_000;

/**
 * A Redis client on `url` with `commandTimeout` (TEST_REDIS_COMMAND_TIMEOUT_MS unless `options` gives
 * another; `commandTimeout: undefined` keeps it) and `options` over ioredis's defaults.
 */
export function testRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { ...options, commandTimeout: options.commandTimeout ?? TEST_REDIS_COMMAND_TIMEOUT_MS });
}
