-- Shared definitions, pasted where a script says `--#include common` (Redis has no includes).
-- Including it does no work: the policy, the clock (TIME) and the state hash (one HMGET) are read on
-- first use, and writes to the state hash are collected and sent once, by reply(). So the rules here
-- are also the fast path: a healthy admission in CLOSED costs one HMGET. (Every table and closure
-- made here costs each run some server time, which is why the cache is an array, not a map.)
--
-- KEYS: 1 state hash, 2 window buckets hash, 3 half-open permits zset; all share one hash tag.
--   4 (only for a breaker whose calls draw on a request budget) the host's budget hash.
-- ARGV, the same layout for every script (worker/breaker/protocol.py builds it):
--   1..10  the policy, in BreakerPolicy.script_args order (positions named below)
--   11..15 successes this process buffered: generation, count, highest failure sequence seen at
--          their admission, age in seconds, count admitted under older generations
--   16..19 the operation: op, generation at admission, permit token or '', detail (an error label
--          or an operator's reason)
--   20..26 the request budget's policy (BudgetPolicy.script_args; empty without a budget)
--   27..29 budget: successes since the last round trip, the budget epoch the call was admitted in,
--          the Retry-After of a refusal (seconds, 0 without one)
-- Time is the Redis server's TIME, so workers with skewed clocks agree.
local S, W, P, BUDGET = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- The budget's part of the reply (protocol.BUDGET_FIELDS: wait, slot, epoch, rate, event, at_floor),
-- set by the scripts that ask the budget.
local NO_BUDGET = '0 0 0 0 - 0'
local budget_said = NO_BUDGET
-- The window is this many buckets; its edge is accurate to one bucket.
local WINDOW_BUCKETS = 20

local THRESHOLD, RATE, WINDOW, MIN_CALLS, OPEN_S, MULT, OPEN_MAX, HALF_MAX, PERMIT_T, SUCCESS_T =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10
local function policy(i) return tonumber(ARGV[i]) end

local function fmt(x) return string.format('%.6f', x) end

local clock = nil
local function now()
  if clock == nil then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return clock
end

-- The state hash fields decisions read, fetched together by one HMGET on first use and kept
-- current by set() and del(). Counters no decision reads ('rejected', 'ptok') use HINCRBY.
local STATE, GEN, FSEQ, OKSEQ, CS, FPROBES, NEXT_AT, OKS, FAILS, LAST_OK = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
local CACHED = {'state', 'gen', 'fseq', 'okseq', 'cs', 'fprobes', 'next_at', 'oks', 'fails', 'last_ok_at'}
local h = nil
local function get(i)
  if h == nil then h = redis.call('HMGET', S, unpack(CACHED)) end
  return h[i]
end
local function num(i) return tonumber(get(i) or '0') end
local function state() return get(STATE) or 'closed' end

-- Writes to the state hash wait here and go out as one HSET (a field written twice: the last
-- value wins, in the place of the first) and one HDEL when reply() flushes them. A field is a
-- CACHED position or a name; a field deleted is not written again in the same run.
local writes, deletes = nil, nil
local function set(field, value)
  if type(field) == 'number' then
    get(field)
    h[field] = tostring(value)
    field = CACHED[field]
  end
  if writes == nil then writes = {} end
  writes[#writes + 1] = field
  writes[#writes + 1] = value
end
local function del(field)
  if type(field) == 'number' then
    get(field)
    h[field] = false
    field = CACHED[field]
  end
  if deletes == nil then deletes = {} end
  deletes[#deletes + 1] = field
end
local function flush()
  if writes ~= nil then redis.call('HSET', S, unpack(writes)) end
  if deletes ~= nil then redis.call('HDEL', S, unpack(deletes)) end
  writes, deletes = nil, nil
end

local function bucket() return math.floor(now() / (policy(WINDOW) / WINDOW_BUCKETS)) end

-- The window: per bucket, field 'c<bucket>' counts calls and 'f<bucket>' failures. Buckets that
-- left the window are deleted whenever a bucket starts, so memory stays bounded and, while the
-- current bucket exists, every bucket in the hash is inside the window.

-- Deletes from the window's fields (`all`, from HGETALL) the buckets before `lo`; returns the
-- calls and failures of the others.
local function window_trim(all, lo)
  local calls, fails, stale = 0, 0, {}
  for k = 1, #all, 2 do
    local field = all[k]
    if tonumber(string.sub(field, 2)) < lo then
      stale[#stale + 1] = field
    elseif string.byte(field) == 99 then -- 'c'
      calls = calls + tonumber(all[k + 1])
    else
      fails = fails + tonumber(all[k + 1])
    end
  end
  if #stale > 0 then redis.call('HDEL', W, unpack(stale)) end
  return calls, fails
end

-- The window's calls and failures, and the current bucket's fields and counts.
local function window_read()
  local idx = bucket()
  local cf, ff = 'c' .. idx, 'f' .. idx
  local all = redis.call('HGETALL', W)
  local calls, fails, bucket_calls, bucket_fails = 0, 0, nil, 0
  for k = 1, #all, 2 do
    local field, n = all[k], tonumber(all[k + 1])
    if string.byte(field) == 99 then calls = calls + n else fails = fails + n end -- 99: 'c'
    if field == cf then bucket_calls = n elseif field == ff then bucket_fails = n end
  end
  if bucket_calls == nil then -- the current bucket starts now
    calls, fails = window_trim(all, idx - WINDOW_BUCKETS + 1)
    bucket_calls = 0
  end
  return calls, fails, cf, bucket_calls, ff, bucket_fails
end

-- Successes: one HINCRBY; the one that starts a bucket trims the window.
local function window_add_successes(count)
  local idx = bucket()
  if redis.call('HINCRBY', W, 'c' .. idx, count) == count then
    window_trim(redis.call('HGETALL', W), idx - WINDOW_BUCKETS + 1)
  end
end

-- A failure: the window is read anyway (the rate rule needs it), so its bucket is written with the
-- counts just read plus one (the script runs alone: that is an increment). Returns calls, fails.
local function window_add_failure()
  local calls, fails, cf, bucket_calls, ff, bucket_fails = window_read()
  redis.call('HSET', W, cf, bucket_calls + 1, ff, bucket_fails + 1)
  return calls + 1, fails + 1
end

-- The trip rule, judged on a failure in CLOSED: a run of consecutive failures, or the failure rate
-- over the window once it holds enough calls. Returns the reason, or nil.
local function trip_reason(consecutive, calls, fails)
  if consecutive >= policy(THRESHOLD) then return 'consecutive_failures' end
  if calls >= policy(MIN_CALLS) and fails >= policy(RATE) * calls then return 'failure_rate' end
  return nil
end

-- How long to stay OPEN: grows by the multiplier after each failed probe, up to the maximum (never
-- below the first period).
local function open_duration()
  local longest = math.max(policy(OPEN_MAX), policy(OPEN_S))
  return math.min(policy(OPEN_S) * policy(MULT) ^ num(FPROBES), longest)
end

-- Every transition bumps the generation: outcomes admitted under an older one are ignored.
local function transition(new, reason)
  local old = state()
  set(STATE, new)
  set(GEN, num(GEN) + 1)
  set(CS, 0)
  redis.call('DEL', P)
  if new == 'open' then
    set('opened_at', fmt(now()))
    set(NEXT_AT, fmt(now() + open_duration()))
  elseif new == 'forced_open' then
    set('opened_at', fmt(now()))
    del(NEXT_AT)
  elseif new == 'closed' or new == 'forced_closed' then
    set(FSEQ, 0)
    set(OKSEQ, 0)
    set(FPROBES, 0)
    del('opened_at')
    del(NEXT_AT)
    redis.call('DEL', W)
  end
  return {old, new, reason}
end

-- Successes this worker counted locally since its last round trip (ARGV 11..15). They end the
-- consecutive-failure run only up to the failure sequence their admission saw: failures recorded
-- after it stay counted; successes of another generation only reach the totals.
local function apply_pending()
  if ARGV[12] == '0' and ARGV[15] == '0' then return end
  local count, stale = tonumber(ARGV[12]), tonumber(ARGV[15])
  -- No 'calls' counter: the total of calls is oks + fails (protocol.parse_stats).
  set(OKS, num(OKS) + count + stale)
  if count == 0 then return end
  local last_ok = now() - tonumber(ARGV[14])
  if last_ok > num(LAST_OK) then set(LAST_OK, fmt(last_ok)) end
  if tonumber(ARGV[11]) ~= num(GEN) or state() ~= 'closed' then return end
  local seq = tonumber(ARGV[13])
  if seq > num(OKSEQ) then set(OKSEQ, seq) end
  window_add_successes(count)
end

local function snapshot()
  local out = redis.call('HGETALL', S)
  local calls, fails = window_read()
  redis.call('ZREMRANGEBYSCORE', P, '-inf', fmt(now()))
  local permits = redis.call('ZCARD', P)
  local extra = {'wc', calls, 'wf', fails, 'permits', permits, 'now', fmt(now())}
  for i = 1, #extra do out[#out + 1] = extra[i] end
  return out
end

-- Every script ends here: the state writes go out, then one string, the fields of
-- protocol.HEAD_FIELDS, the budget's (protocol.BUDGET_FIELDS) and the transition's old, new and reason ('-' each without one; the reason
-- last: it may hold spaces). A transition adds the stats snapshot: {head, snapshot}.
local function reply(allowed, retry_after, token, tr)
  flush()
  local head = allowed .. ' ' .. state() .. ' ' .. (get(GEN) or '0') .. ' ' .. fmt(retry_after) .. ' '
    .. (token == '' and '-' or token) .. ' ' .. (get(FSEQ) or '0') .. ' ' .. (get(OKSEQ) or '0')
    .. ' ' .. budget_said
  if tr == nil then return head .. ' - - -' end
  return {head .. ' ' .. tr[1] .. ' ' .. tr[2] .. ' ' .. tr[3], snapshot()}
end
