import type { RedisBarrierConnection } from './barrier.types.js';
import type { RedisLike } from './redis-barrier.store.js';

/** Registers an `ioredis` client as a barrier connection (it answers `@MsgQueryPrepared` back-checks). */
export function redisBarrierConnection(redis: RedisLike): RedisBarrierConnection {
  return { redis };
}
