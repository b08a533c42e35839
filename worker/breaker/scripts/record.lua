-- Report an outcome at once. ARGV 16: 'fail', 'ok', 'release' (the call was cancelled: give the
-- permit back, count nothing) or 'flush' (only apply pending successes); 17: generation at admission;
-- 18: half-open permit token or ''; 19: short error label (never a message: no secrets).
-- Fast path, above the shared helpers (see admit.lua): a failure in CLOSED that trips nothing,
-- with nothing buffered and the newest window bucket current, so every bucket in the window is
-- live (the bucket's opening trimmed the rest). It reads everything first and falls through to
-- the full rules, having written nothing, whenever the failure would trip the breaker.
if ARGV[16] == 'fail' and ARGV[12] == '0' and ARGV[15] == '0' then
  local S, W = KEYS[1], KEYS[2]
  local t = redis.call('TIME')
  local now = t[1] + t[2] / 1000000
  local idx = math.floor(now / tonumber(ARGV[3]))
  local v = redis.call('HMGET', S, 'state', 'gen', 'fseq', 'okseq', 'wb', 'fails')
  local gen = v[2] or '0'
  if (v[1] or 'closed') == 'closed' and gen == ARGV[17] and tonumber(v[5]) == idx then
    local fseq, okseq = tonumber(v[3] or '0') + 1, tonumber(v[4] or '0')
    local cf, ff = 'c' .. idx, 'f' .. idx
    local calls, fails, bucket_calls, bucket_fails = 1, 1, 1, 1 -- this failure, then the window
    local all = redis.call('HGETALL', W)
    for k = 1, #all, 2 do
      local field, n = all[k], tonumber(all[k + 1])
      if string.sub(field, 1, 1) == 'c' then
        calls = calls + n
        if field == cf then bucket_calls = bucket_calls + n end
      else
        fails = fails + n
        if field == ff then bucket_fails = bucket_fails + n end
      end
    end
    local rate_trips = calls >= tonumber(ARGV[4]) and fails >= tonumber(ARGV[2]) * calls
    if fseq - okseq < tonumber(ARGV[1]) and not rate_trips then
      -- Counters set from the values just read: the script runs alone, so this is an increment.
      redis.call('HSET', S, 'fails', tonumber(v[6] or '0') + 1, 'fseq', fseq,
        'last_fail_at', string.format('%.6f', now), 'last_fail_err', ARGV[19])
      redis.call('HSET', W, cf, bucket_calls, ff, bucket_fails)
      return '1 closed ' .. gen .. ' 0.000000 - ' .. fseq .. ' ' .. okseq .. ' - - -'
    end
  end
end
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
