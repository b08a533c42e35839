-- "May I call?" Applies pending successes, moves OPEN to HALF_OPEN once the open period is over,
-- and hands out at most HALF_MAX probe permits (leases) fleet-wide.
--#include common
apply_pending()
local st = state()
if st == 'closed' or st == 'forced_closed' then
  return reply(1, 0, '', nil)
end
if st == 'forced_open' then
  redis.call('HINCRBY', S, 'rejected', 1)
  return reply(0, policy(OPEN_S), '', nil)
end
local tr = nil
if st == 'open' then
  local wait = num(NEXT_AT) - now()
  if wait > 0 then
    redis.call('HINCRBY', S, 'rejected', 1)
    return reply(0, wait, '', nil)
  end
  tr = transition('half_open', 'open_period_elapsed')
end
-- HALF_OPEN: reclaim leases whose holder died, then grant one if any is free.
redis.call('ZREMRANGEBYSCORE', P, '-inf', fmt(now()))
if redis.call('ZCARD', P) < policy(HALF_MAX) then
  local token = num(GEN) .. '-' .. redis.call('HINCRBY', S, 'ptok', 1)
  redis.call('ZADD', P, fmt(now() + policy(PERMIT_T)), token)
  return reply(1, 0, token, tr)
end
redis.call('HINCRBY', S, 'rejected', 1)
local first = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
return reply(0, math.min(policy(OPEN_S), tonumber(first[2]) - now()), '', tr)
