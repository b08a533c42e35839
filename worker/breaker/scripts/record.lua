-- Report an outcome at once. ARGV 16: 'fail', 'ok', 'release' (the call was cancelled: give the
-- permit back, count nothing) or 'flush' (only apply pending successes); 17: generation at admission;
-- 18: half-open permit token or ''; 19: short error label (never a message: no secrets).
--#include common
apply_pending()
local kind, gen, token = ARGV[16], tonumber(ARGV[17]), ARGV[18]
if kind == 'flush' then return reply(1, 0, '', nil) end
if kind == 'release' then
  redis.call('ZREM', P, token)
  return reply(1, 0, '', nil)
end
if kind == 'fail' then
  redis.call('HINCRBY', S, 'fails', 1)
  redis.call('HSET', S, 'last_fail_at', fmt(now), 'last_fail_err', ARGV[19])
else
  redis.call('HINCRBY', S, 'oks', 1)
  set('last_ok_at', fmt(now))
end
-- Fencing: an outcome admitted under another generation (a slow call that started before the
-- breaker changed state) only reaches the totals.
if gen ~= geti('gen') then return reply(1, 0, '', nil) end
local st = state()
if st == 'closed' and kind == 'fail' then
  local cf = incr('fseq', 1) - geti('okseq')
  window_add(1, 1)
  local calls, fails = window_read()
  if cf >= THRESHOLD then
    return reply(1, 0, '', transition('open', 'consecutive_failures'))
  end
  if calls >= MIN_CALLS and fails >= RATE * calls then
    return reply(1, 0, '', transition('open', 'failure_rate'))
  end
elseif st == 'half_open' and redis.call('ZREM', P, token) == 1 then
  -- Only a live lease counts: a reclaimed one belonged to a holder presumed dead.
  if kind == 'fail' then
    incr('fprobes', 1)
    return reply(1, 0, '', transition('open', 'probe_failed'))
  end
  if redis.call('HINCRBY', S, 'cs', 1) >= SUCCESS_T then
    return reply(1, 0, '', transition('closed', 'probes_succeeded'))
  end
end
return reply(1, 0, '', nil)
