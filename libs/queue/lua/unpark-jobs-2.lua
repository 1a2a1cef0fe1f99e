--[[
  Takes jobs out of the waiting-for-a-processor set of their name (they were promoted, or are
  gone), and the name out of the queue's set once none of its jobs waits. With a lock key prefix,
  a job still locked is left filed: it is active, between being filed and being moved to the
  delayed set, and its parker settles it (see park-job-6).

  KEYS[1] the sorted set of the jobs of this name waiting for a processor
  KEYS[2] the set of the queue's job names with waiting jobs
  ARGV[1] job name
  ARGV[2] the queue's job key prefix ("<prefix>:<queue>:") to keep locked jobs, or ''
  ARGV[3..] job ids

  Returns how many of the given jobs were left filed because they are locked.
]]
local rcall = redis.call
local kept = 0
for i = 3, #ARGV do
  if ARGV[2] ~= '' and rcall('EXISTS', ARGV[2] .. ARGV[i] .. ':lock') == 1 then
    kept = kept + 1
  else
    rcall('ZREM', KEYS[1], ARGV[i])
  end
end
if rcall('ZCARD', KEYS[1]) == 0 then rcall('SREM', KEYS[2], ARGV[1]) end
return kept
