-- "May I call?" ARGV 16..: none. Applies pending successes, moves OPEN to HALF_OPEN once the open
-- period is over, and hands out at most HALF_MAX probe permits (leases) fleet-wide.
--
-- Fast path first, before the shared helpers are even defined: every line above the include runs
-- on every healthy call, so it does the minimum (one HMGET; TIME, one HSET and one HINCRBY only
-- when this worker has successes buffered) and falls through to the full rules below whenever
-- anything is unusual. It writes nothing before deciding it can finish, so falling through never
-- applies anything twice. The reply format is the one reply() builds.
if ARGV[15] == '0' then
  local S = KEYS[1]
  if ARGV[12] == '0' then
    -- Nothing buffered: no write, and no clock unless the breaker is open.
    local v = redis.call('HMGET', S, 'state', 'gen', 'fseq', 'okseq', 'next_at')
    local st = v[1] or 'closed'
    if st == 'closed' or st == 'forced_closed' then
      return '1 ' .. st .. ' ' .. (v[2] or '0') .. ' 0.000000 - ' .. (v[3] or '0') .. ' '
        .. (v[4] or '0') .. ' - - -'
    end
    if st == 'forced_open' then
      redis.call('HINCRBY', S, 'rejected', 1)
      return '0 forced_open ' .. (v[2] or '0') .. ' ' .. string.format('%.6f', tonumber(ARGV[5]))
        .. ' - ' .. (v[3] or '0') .. ' ' .. (v[4] or '0') .. ' - - -'
    end
    if st == 'open' then
      local t = redis.call('TIME')
      local wait = tonumber(v[5] or '0') - (t[1] + t[2] / 1000000)
      if wait > 0 then
        redis.call('HINCRBY', S, 'rejected', 1)
        return '0 open ' .. (v[2] or '0') .. ' ' .. string.format('%.6f', wait) .. ' - '
          .. (v[3] or '0') .. ' ' .. (v[4] or '0') .. ' - - -'
      end
    end
  else
    -- Successes of one generation buffered, and the newest window bucket is still the current one
    -- (a new bucket means trimming the old ones: the full path does that).
    local t = redis.call('TIME')
    local now = t[1] + t[2] / 1000000
    local idx = math.floor(now / tonumber(ARGV[3]))
    local v = redis.call('HMGET', S, 'state', 'gen', 'fseq', 'okseq', 'oks', 'last_ok_at', 'wb')
    local gen = v[2] or '0'
    if (v[1] or 'closed') == 'closed' and gen == ARGV[11] and tonumber(v[7]) == idx then
      local count = tonumber(ARGV[12])
      local okseq = math.max(tonumber(v[4] or '0'), tonumber(ARGV[13]))
      local last_ok = now - tonumber(ARGV[14])
      local oks = tonumber(v[5] or '0') + count
      if last_ok > tonumber(v[6] or '0') then
        redis.call('HSET', S, 'oks', oks, 'okseq', okseq, 'last_ok_at', string.format('%.6f', last_ok))
      else
        redis.call('HSET', S, 'oks', oks, 'okseq', okseq)
      end
      redis.call('HINCRBY', KEYS[2], 'c' .. idx, count)
      return '1 closed ' .. gen .. ' 0.000000 - ' .. (v[3] or '0') .. ' ' .. okseq .. ' - - -'
    end
  end
end
--#include common
apply_pending()
local st = state()
if st == 'closed' or st == 'forced_closed' then
  return reply(1, 0, '', nil)
end
if st == 'forced_open' then
  redis.call('HINCRBY', S, 'rejected', 1)
  return reply(0, OPEN_S, '', nil)
end
local tr = nil
if st == 'open' then
  local wait = getf('next_at') - now
  if wait > 0 then
    redis.call('HINCRBY', S, 'rejected', 1)
    return reply(0, wait, '', nil)
  end
  tr = transition('half_open', 'open_period_elapsed')
end
-- HALF_OPEN: reclaim leases whose holder died, then grant one if any is free.
redis.call('ZREMRANGEBYSCORE', P, '-inf', fmt(now))
if redis.call('ZCARD', P) < HALF_MAX then
  local token = geti('gen') .. '-' .. redis.call('HINCRBY', S, 'ptok', 1)
  redis.call('ZADD', P, fmt(now + PERMIT_T), token)
  return reply(1, 0, token, tr)
end
redis.call('HINCRBY', S, 'rejected', 1)
local first = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
return reply(0, math.min(OPEN_S, tonumber(first[2]) - now), '', tr)
