/** The part of an `ioredis` client the barrier uses. */
export interface RedisLike {
  eval(script: string, numberOfKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/**
 * Lua of DTM's Redis barrier, as its semantics are described (our own script): KEYS[1] the amount,
 * KEYS[2] this call's barrier key, KEYS[3] its origin op's key; ARGV[1] the amount to add,
 * ARGV[2] the origin op ('' when none), ARGV[3] the keys' expiry in seconds. Answers APPLIED,
 * FAILURE, NULL_COMPENSATION, DUPLICATE, or HANGING (a duplicate too: an action whose key its
 * compensation wrote first).
 */
export const REDIS_ADJUST_SCRIPT = `
local balance = redis.call('GET', KEYS[1])
local done = redis.call('GET', KEYS[2])
if balance == false or tonumber(balance) + tonumber(ARGV[1]) < 0 then
  return 'FAILURE'
end
if done == 'rollback' then
  return 'HANGING'
end
if done ~= false then
  return 'DUPLICATE'
end
redis.call('SET', KEYS[2], 'op', 'EX', ARGV[3])
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == false then
  redis.call('SET', KEYS[3], 'rollback', 'EX', ARGV[3])
  return 'NULL_COMPENSATION'
end
redis.call('INCRBY', KEYS[1], ARGV[1])
return 'APPLIED'
`;

/** Lua of the Redis message back-check: KEYS[1] the msg barrier key; ARGV[1] expiry in seconds. */
export const REDIS_QUERY_PREPARED_SCRIPT = `
local reason = redis.call('GET', KEYS[1])
if reason == false then
  redis.call('SET', KEYS[1], 'rollback', 'EX', ARGV[1])
  reason = 'rollback'
end
return reason
`;
