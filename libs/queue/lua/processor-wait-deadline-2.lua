--[[
  When a job that no processor serves stops waiting for one, for its current attempt: the time it
  first came up with nothing to serve it, plus the queue's processor_wait as it is now. That first
  time is kept in the job's own hash (BullMQ ignores the field and deletes it with the job), tagged
  with the attempt, so handing the job around between replicas, or workers that come and go, does
  not extend its wait, a changed processor_wait applies to jobs already waiting, and a retry starts
  a new wait.

  KEYS[1] the job's hash
  KEYS[2] the sorted set of the jobs of its name waiting for a processor
  ARGV[1] job id
  ARGV[2] attempts made
  ARGV[3] processor_wait (ms)
  ARGV[4] now (ms)

  Returns the deadline (ms), or -1 if the job does not exist. A deadline that has passed takes the
  job out of the waiting set: it is about to fail as PROCESSOR_NOT_FOUND.
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[1]) == 0 then return -1 end
local field = 'jmpw'
local tag = ARGV[2] .. ':'
local now = tonumber(ARGV[4])
local stored = rcall('HGET', KEYS[1], field)
local since
if stored and string.sub(stored, 1, #tag) == tag then since = tonumber(string.sub(stored, #tag + 1)) end
if not since then
  since = now
  rcall('HSET', KEYS[1], field, tag .. ARGV[4])
end
local deadline = since + tonumber(ARGV[3])
if deadline <= now then rcall('ZREM', KEYS[2], ARGV[1]) end
return deadline
