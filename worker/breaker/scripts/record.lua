-- Report an outcome at once. ARGV 16: 'fail', 'ok', 'release' (the call was cancelled: give the
-- permit back, count nothing), 'throttle' (the host refused the call to pace us: KEYS[4]'s budget
-- decides) or 'flush' (only apply pending successes); 17: generation at
-- admission; 18: half-open permit token or ''; 19: short error label (never a message: no secrets).
--#include common
--#include budget
apply_pending()
local kind, gen, token = ARGV[16], tonumber(ARGV[17]), ARGV[18]
if kind == 'flush' then return reply(1, 0, '', nil) end
if kind == 'throttle' then
  -- The host asked us to slow down: the budget's signal. Only a refusal at the budget's floor says
  -- the host cannot be served at all, and counts as a failure.
  local r = budget_throttle(BUDGET, now(), budget_policy(ARGV, 20), tonumber(ARGV[28]), tonumber(ARGV[29]))
  budget_said = '0 0 0 ' .. budget_rate(r[2]) .. ' ' .. r[3] .. ' ' .. r[1]
  if r[1] == 0 then
    redis.call('ZREM', P, token) -- a probe's lease goes back: the host answered, nothing was learnt
    return reply(1, 0, '', nil)
  end
  kind = 'fail'
end
if kind == 'release' then
  redis.call('ZREM', P, token)
  return reply(1, 0, '', nil)
end
if kind == 'fail' then
  set(FAILS, num(FAILS) + 1)
  set('last_fail_at', fmt(now()))
  set('last_fail_err', ARGV[19])
else
  set(OKS, num(OKS) + 1)
  set(LAST_OK, fmt(now()))
end
-- Fencing: an outcome admitted under another generation (a slow call that started before the
-- breaker changed state) only reaches the totals.
if gen ~= num(GEN) then return reply(1, 0, '', nil) end
local st = state()
if st == 'closed' and kind == 'fail' then
  set(FSEQ, num(FSEQ) + 1)
  local calls, fails = window_add_failure()
  local reason = trip_reason(num(FSEQ) - num(OKSEQ), calls, fails)
  if reason then return reply(1, 0, '', transition('open', reason)) end
elseif st == 'half_open' and redis.call('ZREM', P, token) == 1 then
  -- Only a live lease counts: a reclaimed one belonged to a holder presumed dead.
  if kind == 'fail' then
    set(FPROBES, num(FPROBES) + 1)
    return reply(1, 0, '', transition('open', 'probe_failed'))
  end
  set(CS, num(CS) + 1)
  if num(CS) >= policy(SUCCESS_T) then
    return reply(1, 0, '', transition('closed', 'probes_succeeded'))
  end
end
return reply(1, 0, '', nil)
