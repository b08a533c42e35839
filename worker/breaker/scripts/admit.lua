-- "May I call?" Applies pending successes, moves OPEN to HALF_OPEN once the open period is over,
-- and hands out at most HALF_MAX probe permits (leases) fleet-wide.
--#include common
--#include budget

-- The call may go as far as the breaker is concerned: now the host's budget gives it a slot. False
-- when no slot is free within the longest a call may wait (a long Retry-After): nothing reserved.
-- Also returns the wait, so a probe's lease runs from its slot.
local function budget_slot()
  if BUDGET == nil then return true, 0 end
  local t = now()
  local r = budget_admit(BUDGET, t, budget_policy(ARGV, 20), tonumber(ARGV[27]))
  budget_said = fmt(r[1]) .. ' ' .. fmt(t + math.abs(r[1])) .. ' ' .. r[2] .. ' ' .. budget_rate(r[3]) .. ' '
    .. r[4] .. ' 0'
  return r[1] >= 0, math.max(r[1], 0)
end

apply_pending()
local st = state()
if st == 'closed' or st == 'forced_closed' then
  budget_slot()
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
  -- A probe waits for its slot too; without one it takes no lease.
  local slotted, wait = budget_slot()
  if not slotted then return reply(1, 0, '', tr) end
  local token = num(GEN) .. '-' .. redis.call('HINCRBY', S, 'ptok', 1)
  redis.call('ZADD', P, fmt(now() + wait + policy(PERMIT_T)), token)
  return reply(1, 0, token, tr)
end
redis.call('HINCRBY', S, 'rejected', 1)
local first = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
return reply(0, math.min(policy(OPEN_S), tonumber(first[2]) - now()), '', tr)
