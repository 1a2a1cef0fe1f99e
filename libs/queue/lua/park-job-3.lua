--[[
  Files a job (already moved to BullMQ's delayed set until its deadline) as waiting for a
  processor, unless another replica serves its name by now. Checking and filing in one step is
  what makes waiting safe: a replica that starts serving the name first publishes it to the
  served hash and only then promotes the waiting set, so a job is either filed before that
  promotion reads the set, or sees the name served here and is promoted by its caller.

  KEYS[1] the queue's served hash ("<replica>|<job name or *>" -> until, ms)
  KEYS[2] the set of the queue's job names with waiting jobs
  KEYS[3] the sorted set of the jobs of this name waiting for a processor
  ARGV[1] the calling replica (its own entries do not count: it has just found it cannot serve)
  ARGV[2] job name
  ARGV[3] job id
  ARGV[4] deadline (ms)
  ARGV[5] now (ms)

  Returns 1 when filed, 0 when another replica serves the name (the caller promotes the job).
  Entries past their time are dropped on the way: they belong to replicas that stopped.
]]
local rcall = redis.call
local now = tonumber(ARGV[5])
local fields = rcall('HGETALL', KEYS[1])
local served = false
for i = 1, #fields, 2 do
  local replica, name = string.match(fields[i], '^(.*)|([^|]*)$')
  if tonumber(fields[i + 1]) <= now then
    rcall('HDEL', KEYS[1], fields[i])
  elseif replica ~= ARGV[1] and (name == ARGV[2] or name == '*') then
    served = true
  end
end
if served then return 0 end
rcall('SADD', KEYS[2], ARGV[2])
rcall('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
