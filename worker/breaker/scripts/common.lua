-- Shared preamble, prepended to every breaker script (Redis has no includes).
-- KEYS: 1 state hash, 2 window buckets hash, 3 half-open permits zset; all share one hash tag.
-- ARGV 1..10: the policy (BreakerPolicy.script_args); 11..15: pending successes; 16..: per script.
-- Time is the Redis server's TIME, so workers with skewed clocks agree.
local unpack = unpack or table.unpack
local S, W, P = KEYS[1], KEYS[2], KEYS[3]
local THRESHOLD = tonumber(ARGV[1])
local RATE = tonumber(ARGV[2])
local BUCKET = tonumber(ARGV[3])
local MIN_CALLS = tonumber(ARGV[4])
local OPEN_S = tonumber(ARGV[5])
local MULT = tonumber(ARGV[6])
local OPEN_MAX = math.max(tonumber(ARGV[7]), OPEN_S)
local HALF_MAX = tonumber(ARGV[8])
local PERMIT_T = tonumber(ARGV[9])
local SUCCESS_T = tonumber(ARGV[10])
local WINDOW_BUCKETS = 20

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local function fmt(x) return string.format('%.6f', x) end
local function geti(field) return tonumber(redis.call('HGET', S, field) or '0') end
local function getf(field) return tonumber(redis.call('HGET', S, field) or '0') end
local function state() return redis.call('HGET', S, 'state') or 'closed' end

-- Sum the buckets still inside the window and delete the rest, so memory stays bounded.
local function window_read()
  local lo = math.floor(now / BUCKET) - WINDOW_BUCKETS + 1
  local all = redis.call('HGETALL', W)
  local calls, fails, stale = 0, 0, {}
  for k = 1, #all, 2 do
    local idx = tonumber(string.sub(all[k], 2))
    if idx < lo then
      stale[#stale + 1] = all[k]
    elseif string.sub(all[k], 1, 1) == 'c' then
      calls = calls + tonumber(all[k + 1])
    else
      fails = fails + tonumber(all[k + 1])
    end
  end
  if #stale > 0 then redis.call('HDEL', W, unpack(stale)) end
  return calls, fails
end

local function window_add(calls, fails)
  local idx = math.floor(now / BUCKET)
  local n = redis.call('HINCRBY', W, 'c' .. idx, calls)
  if fails > 0 then redis.call('HINCRBY', W, 'f' .. idx, fails) end
  -- A new bucket opened: trim the old ones even if no failure ever reads the window.
  if n == calls then window_read() end
end

local function snapshot()
  local out = redis.call('HGETALL', S)
  local calls, fails = window_read()
  redis.call('ZREMRANGEBYSCORE', P, '-inf', fmt(now))
  local permits = redis.call('ZCARD', P)
  local extra = {'wc', calls, 'wf', fails, 'permits', permits, 'now', fmt(now)}
  for i = 1, #extra do out[#out + 1] = extra[i] end
  return out
end

-- Every transition bumps the generation: outcomes admitted under an older one are ignored.
local function transition(new, reason)
  local old = state()
  local gen = geti('gen') + 1
  redis.call('HSET', S, 'state', new, 'gen', gen, 'cs', 0)
  redis.call('DEL', P)
  if new == 'open' then
    local probes = geti('fprobes')
    local dur = math.min(OPEN_S * MULT ^ probes, OPEN_MAX)
    redis.call('HSET', S, 'opened_at', fmt(now), 'next_at', fmt(now + dur))
  elseif new == 'forced_open' then
    redis.call('HSET', S, 'opened_at', fmt(now))
    redis.call('HDEL', S, 'next_at')
  elseif new == 'closed' or new == 'forced_closed' then
    redis.call('HSET', S, 'fseq', 0, 'okseq', 0, 'fprobes', 0)
    redis.call('HDEL', S, 'opened_at', 'next_at')
    redis.call('DEL', W)
  end
  return {old, new, reason}
end

-- Successes this worker counted locally since its last round trip (ARGV 11..15: generation, count,
-- highest failure sequence seen at their admission, age in seconds, count from older generations).
-- They close the consecutive-failure run only up to that sequence: failures recorded after their
-- admission stay counted, and successes of another generation only reach the totals.
local function apply_pending()
  local gen, count = tonumber(ARGV[11]), tonumber(ARGV[12])
  local stale = tonumber(ARGV[15])
  local total = count + stale
  if total == 0 then return end
  redis.call('HINCRBY', S, 'oks', total)
  redis.call('HINCRBY', S, 'calls', total)
  if count == 0 then return end
  local last_ok = now - tonumber(ARGV[14])
  if last_ok > getf('last_ok_at') then redis.call('HSET', S, 'last_ok_at', fmt(last_ok)) end
  if gen ~= geti('gen') or state() ~= 'closed' then return end
  local seq = tonumber(ARGV[13])
  if seq > geti('okseq') then redis.call('HSET', S, 'okseq', seq) end
  window_add(count, 0)
end

local function reply(allowed, retry_after, token, tr)
  local st = state()
  local gen = geti('gen')
  if tr == nil then
    return {allowed, st, gen, fmt(retry_after), token, geti('fseq'), '', '', '', {}, geti('okseq')}
  end
  local snap = snapshot()
  return {allowed, st, gen, fmt(retry_after), token, geti('fseq'), tr[1], tr[2], tr[3], snap,
          geti('okseq')}
end
