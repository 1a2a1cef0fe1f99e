--[[
  Takes jobs out of the waiting-for-a-processor set of their name (they were promoted, or are
  gone), and the name out of the queue's set once none of its jobs waits.

  KEYS[1] the sorted set of the jobs of this name waiting for a processor
  KEYS[2] the set of the queue's job names with waiting jobs
  ARGV[1] job name
  ARGV[2..] job ids

  Returns how many jobs still wait under this name.
]]
local rcall = redis.call
for i = 2, #ARGV, 1000 do
  rcall('ZREM', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local left = rcall('ZCARD', KEYS[1])
if left == 0 then rcall('SREM', KEYS[2], ARGV[1]) end
return left
