-- The request budget of one upstream host, shared by every worker process and every source calling
-- it: GCRA slots on Redis time, with a rate the host's answers adapt (AIMD). Included by the breaker's
-- admit and record scripts, so a call asks the breaker and the budget in one round trip.
--
-- One hash per host (the caller passes its key):
--   tat           GCRA theoretical arrival time: the slot after the last one handed out (Redis time)
--   rate          requests per second for the whole fleet (absent: the ceiling)
--   ceiling       an operator's ceiling (`syncworker budgets set`); it wins over the configured one
--   epoch         bumped by every cut, so the refusals of calls admitted before it do not cut again
--   paused_until  no slot before this (a Retry-After)
--   reported      the rate at the last event written about this host
--   peak          the rate the host last refused (before that cut)
--   granted, throttled, cuts, pauses, last_throttle_at, last_cut_at: what operators read
-- The policy `p` is a table: ceiling, floor, burst, decrease, increase, max_wait, pause_cap.

-- Seconds: see budget_throttle.
local BUDGET_CUT_SPACING = 1.0
-- Past this share of the rate the host last refused (`peak`), the rate rises this much slower.
local BUDGET_PROBE_FROM = 0.95
local BUDGET_PROBE_SLOWER = 0.25

local function budget_num(x, default)
  local n = tonumber(x)
  if n == nil then return default end
  return n
end

-- The policy from ARGV i..i+6, in BudgetPolicy.script_args() order.
local function budget_policy(args, i)
  return {ceiling = tonumber(args[i]), floor = tonumber(args[i + 1]), burst = tonumber(args[i + 2]),
    decrease = tonumber(args[i + 3]), increase = tonumber(args[i + 4]), max_wait = tonumber(args[i + 5]),
    pause_cap = tonumber(args[i + 6])}
end

local function budget_time(x) return string.format('%.6f', x) end
local function budget_rate(x) return string.format('%.6g', x) end

-- Reserve the next slot for one call: returns {wait, epoch, rate, event}. A wait below zero means no
-- slot is free within p.max_wait (nothing was reserved; -wait is how long until one is). `successes`
-- are the calls this process saw succeed since its last round trip: each raises the rate by
-- p.increase / rate, about p.increase requests per second per second at full speed.
local function budget_admit(key, now, p, successes)
  local v = redis.call('HMGET', key, 'tat', 'rate', 'epoch', 'paused_until', 'ceiling', 'reported', 'granted',
    'peak')
  local ceiling = budget_num(v[5], p.ceiling)
  local stored = budget_num(v[2], ceiling)
  local rate = math.min(stored, ceiling)
  local reported = budget_num(v[6], ceiling)
  local event = '-'
  local w = {}
  if successes > 0 and rate < ceiling then
    -- Back quickly to just under the rate the host last refused, then probe past it slowly: the
    -- rate spends its time near what the host takes, and reaches a refusal less often.
    local step = p.increase
    if rate >= BUDGET_PROBE_FROM * budget_num(v[8], math.huge) then step = step * BUDGET_PROBE_SLOWER end
    rate = math.min(ceiling, rate + step * successes / rate)
    if rate >= ceiling and reported < ceiling then
      event = 'restored'
      w[#w + 1] = 'reported'
      w[#w + 1] = budget_rate(ceiling)
    end
  end
  -- Only what successes taught is written back: a caller whose own ceiling is lower is spaced at it
  -- (its interval below) without pulling down the rate the others on the host have learnt.
  if rate > math.min(stored, ceiling) then
    w[#w + 1] = 'rate'
    w[#w + 1] = budget_rate(rate)
  end
  local interval = 1 / rate
  local tat = math.max(budget_num(v[1], 0), now)
  local slot = math.max(now, tat - (p.burst - 1) * interval, budget_num(v[4], 0))
  local epoch = budget_num(v[3], 0)
  if slot - now > p.max_wait then
    if #w > 0 then redis.call('HSET', key, unpack(w)) end
    return {now - slot, epoch, rate, event}
  end
  w[#w + 1] = 'tat'
  w[#w + 1] = budget_time(math.max(tat, slot) + interval)
  w[#w + 1] = 'granted'
  w[#w + 1] = budget_num(v[7], 0) + 1
  redis.call('HSET', key, unpack(w))
  return {slot - now, epoch, rate, event}
end

-- A refusal (429, or 503 with Retry-After) of a call admitted in `seen_epoch`: the first refusal of
-- an epoch cuts the rate multiplicatively (at most once a second), later ones of the same epoch were
-- sent at the old rate and only count. A Retry-After pauses every slot until it passes. Returns {at_floor, rate, events}:
-- at_floor (1/0) says the host refused although the rate was already at its floor (the breaker counts
-- that one); events is '-' or 'lowered', 'paused' or 'lowered,paused' (threshold crossings to log).
local function budget_throttle(key, now, p, seen_epoch, retry_after)
  local v = redis.call('HMGET', key, 'rate', 'epoch', 'paused_until', 'ceiling', 'reported',
    'throttled', 'cuts', 'pauses', 'tat', 'last_cut_at')
  local ceiling = budget_num(v[4], p.ceiling)
  -- The host refused what the whole fleet sent: cut the rate it learnt (an operator's ceiling caps it),
  -- not this caller's view of it.
  local rate = math.min(budget_num(v[1], ceiling), budget_num(v[4], math.huge))
  local epoch = budget_num(v[2], 0)
  local reported = budget_num(v[5], ceiling)
  -- A refusal counts against the breaker only for a call admitted at the floor, in the current
  -- epoch: calls still in flight from before the cut that reached it were sent faster.
  local at_floor = rate <= p.floor and seen_epoch == epoch
  local events = {}
  local w = {'throttled', budget_num(v[6], 0) + 1, 'last_throttle_at', budget_time(now)}
  -- At most one cut per BUDGET_CUT_SPACING: a host answers a refusal at once, so the calls admitted
  -- just after a cut (slots reserved at the old rate, the burst) are refused before the new rate can
  -- show; cutting again for each of them would take the fleet to the floor in a second.
  if seen_epoch == epoch and now - budget_num(v[10], 0) >= BUDGET_CUT_SPACING then
    local peak = rate
    rate = math.max(p.floor, rate * p.decrease)
    epoch = epoch + 1
    for _, x in ipairs({'peak', budget_rate(peak), 'rate', budget_rate(rate), 'epoch', epoch, 'cuts', budget_num(v[7], 0) + 1,
      'last_cut_at', budget_time(now)}) do w[#w + 1] = x end
    -- Logged when the rate first leaves the ceiling, halves again since the last report, or reaches
    -- the floor: a host throttled steadily writes a few rows, not one per refusal.
    if reported >= ceiling or rate <= reported / 2 or (rate <= p.floor and reported > p.floor) then
      events[#events + 1] = 'lowered'
      w[#w + 1] = 'reported'
      w[#w + 1] = budget_rate(rate)
    end
  end
  if retry_after > 0 then
    local paused = budget_num(v[3], 0)
    local resume = now + math.min(retry_after, p.pause_cap)
    if resume > paused then
      w[#w + 1] = 'paused_until'
      w[#w + 1] = budget_time(resume)
      -- Slots already handed out stay valid; the next ones start after the pause, paced at once
      -- (no burst at the moment it ends).
      w[#w + 1] = 'tat'
      w[#w + 1] = budget_time(math.max(budget_num(v[9], 0), resume + (p.burst - 1) / rate))
      if paused <= now then
        events[#events + 1] = 'paused'
        w[#w + 1] = 'pauses'
        w[#w + 1] = budget_num(v[8], 0) + 1
      end
    end
  end
  redis.call('HSET', key, unpack(w))
  local said = '-'
  if #events > 0 then said = table.concat(events, ',') end
  return {at_floor and 1 or 0, rate, said}
end
