-- Shared definitions, pasted where a script says `--#include common` (Redis has no includes).
-- Everything here runs on each call that reaches it, which is why admit.lua puts its fast path
-- above the include.
-- KEYS: 1 state hash, 2 window buckets hash, 3 half-open permits zset; all share one hash tag.
-- ARGV 1..10: the policy (BreakerPolicy.script_args, encoded once by the client);
-- 11..15: pending successes; 16..: per script. The reply is one string on the hot path, so the
-- client parses little. (Splitting packed strings with gmatch cost more than separate arguments.)
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

-- Every field a decision reads, fetched with one HMGET; writes go through set()/del() so the
-- cache stays exact for the rest of the script.
local FIELDS = {'state', 'gen', 'fseq', 'okseq', 'next_at', 'last_ok_at', 'fprobes'}
local h = {}
do
  local values = redis.call('HMGET', S, unpack(FIELDS))
  for i = 1, #FIELDS do h[FIELDS[i]] = values[i] end
end
local function geti(field) return tonumber(h[field] or '0') end
local getf = geti
local function state() return h.state or 'closed' end
local function set(...)
  local args = {...}
  redis.call('HSET', S, unpack(args))
  for i = 1, #args, 2 do h[args[i]] = tostring(args[i + 1]) end
end
local function del(...)
  redis.call('HDEL', S, ...)
  for _, field in ipairs({...}) do h[field] = false end
end
local function incr(field, by)
  local n = redis.call('HINCRBY', S, field, by)
  h[field] = tostring(n)
  return n
end

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
  -- A new bucket opened: trim the old ones even if no failure ever reads the window. 'wb' marks
  -- the newest bucket as trimmed: admit.lua's fast path adds to that bucket only.
  if n == calls then
    window_read()
    set('wb', idx)
  end
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
  set('state', new, 'gen', geti('gen') + 1, 'cs', 0)
  redis.call('DEL', P)
  if new == 'open' then
    local probes = geti('fprobes')
    local dur = math.min(OPEN_S * MULT ^ probes, OPEN_MAX)
    set('opened_at', fmt(now), 'next_at', fmt(now + dur))
  elseif new == 'forced_open' then
    set('opened_at', fmt(now))
    del('next_at')
  elseif new == 'closed' or new == 'forced_closed' then
    set('fseq', 0, 'okseq', 0, 'fprobes', 0)
    del('opened_at', 'next_at', 'wb')
    redis.call('DEL', W)
  end
  return {old, new, reason}
end

-- Successes this worker counted locally since its last round trip (ARGV 11..15: generation,
-- count, highest failure sequence seen at their admission, age in seconds, count from older
-- generations). They close the consecutive-failure run only up to that sequence: failures
-- recorded after their admission stay counted, and successes of another generation only reach
-- the totals.
local function apply_pending()
  local count, stale = tonumber(ARGV[12]), tonumber(ARGV[15])
  local total = count + stale
  if total == 0 then return end
  -- No 'calls' counter: the total of calls is oks + fails (parse_stats).
  redis.call('HINCRBY', S, 'oks', total)
  if count == 0 then return end
  local last_ok = now - tonumber(ARGV[14])
  if last_ok > getf('last_ok_at') then set('last_ok_at', fmt(last_ok)) end
  if tonumber(ARGV[11]) ~= geti('gen') or state() ~= 'closed' then return end
  local seq = tonumber(ARGV[13])
  if seq > geti('okseq') then set('okseq', seq) end
  window_add(count, 0)
end

-- One string: allowed state gen retry_after token fseq okseq old new reason (reason last: it may
-- hold spaces). A transition adds the stats snapshot: {head, snapshot}.
local function reply(allowed, retry_after, token, tr)
  local head = table.concat({allowed, state(), geti('gen'), fmt(retry_after),
    token == '' and '-' or token, geti('fseq'), geti('okseq')}, ' ')
  if tr == nil then return head .. ' - - -' end
  return {head .. ' ' .. tr[1] .. ' ' .. tr[2] .. ' ' .. tr[3], snapshot()}
end
