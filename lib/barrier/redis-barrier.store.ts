/** The part of an `ioredis` client the barrier uses. */
export interface RedisLike {
  eval(script: string, numberOfKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/**
 * Lua of DTM's Redis barrier, as its semantics are described (our own script): KEYS[1] the amount,
 * KEYS[2] this call's barrier key, KEYS[3] its origin op's key; ARGV[1] the amount to add,
 * ARGV[2] the origin op ('' when none), ARGV[3] the keys' expiry in seconds, ARGV[4] (optional) this
 * call's mark: the value this call's key gets (`op` without it; DTM's SDKs read only `rollback`), so
 * that the same call sent again (ioredis resends a command whose answer a cut connection lost, after
 * Redis ran it) answers what it did the first time, APPLIED or NULL_COMPENSATION, not DUPLICATE of
 * itself. Answers, in this order:
 * DUPLICATE (this call's key is there), HANGING (a duplicate too: an action whose key its
 * compensation wrote first), NULL_COMPENSATION (a compensating op whose origin key is missing: it
 * writes both keys and moves nothing), FAILURE (the amount key is missing, or the sum would be
 * negative), `NOT_INTEGER <the stored value, cut at 40 characters>` (not an integer INCRBY can add to), BAD_AMOUNT
 * (ARGV[1] is not an integer), BAD_EXPIRY (ARGV[3] is not a positive integer: checked first, as
 * `SET ... EX` would refuse it only after INCRBY), `NOT_APPLIED <Redis's error>` (INCRBY refused, e.g. an overflow), or
 * APPLIED. Only NULL_COMPENSATION and APPLIED write, and INCRBY is the first write of APPLIED: a
 * Redis script keeps the writes made before an error, so a call whose adjustment did not happen
 * must leave no barrier key (its retry would be skipped as a duplicate). The duplicate and null
 * compensation checks come before the amount's, so that a repeated or null compensation is skipped
 * whatever the balance (DTM retries a compensation answered FAILURE forever).
 */
export const REDIS_ADJUST_SCRIPT = `
if not string.match(ARGV[3], '^[1-9]%d*$') then
  return 'BAD_EXPIRY'
end
local mark = 'op'
if ARGV[4] ~= nil and ARGV[4] ~= '' then
  mark = ARGV[4]
end
local done = redis.call('GET', KEYS[2])
if done == 'rollback' then
  return 'HANGING'
end
if done ~= false and mark ~= 'op' then
  if done == mark then
    return 'APPLIED'
  end
  if done == mark .. ':null' then
    return 'NULL_COMPENSATION'
  end
end
if done ~= false then
  return 'DUPLICATE'
end
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == false then
  redis.call('SET', KEYS[2], mark .. ':null', 'EX', ARGV[3])
  redis.call('SET', KEYS[3], 'rollback', 'EX', ARGV[3])
  return 'NULL_COMPENSATION'
end
local function integer(s)
  return s == '0' or (#s <= 20 and string.match(s, '^-?[1-9]%d*$') ~= nil)
end
local balance = redis.call('GET', KEYS[1])
if balance == false then
  return 'FAILURE'
end
if not integer(balance) then
  return 'NOT_INTEGER ' .. string.sub(balance, 1, 40)
end
if not integer(ARGV[1]) then
  return 'BAD_AMOUNT'
end
if tonumber(balance) + tonumber(ARGV[1]) < 0 then
  return 'FAILURE'
end
local added = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(added) == 'table' and added.err then
  return 'NOT_APPLIED ' .. added.err
end
redis.call('SET', KEYS[2], mark, 'EX', ARGV[3])
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
