-- Operator commands. ARGV 16: 'force_open', 'force_close' or 'reset'; 19: reason (the actor).
--#include common
local target = {force_open = 'forced_open', force_close = 'forced_closed', reset = 'closed'}
local new = target[ARGV[16]]
if new == nil then return redis.error_reply('unknown breaker command') end
if ARGV[16] == 'reset' then
  set(FPROBES, 0)
end
return reply(1, 0, '', transition(new, ARGV[19]))
