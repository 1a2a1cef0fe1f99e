--[[
  Asks again, once the filed job is in BullMQ's delayed set, whether a replica serves its name by
  now (see park-job-6). If one does, the job is unfiled and the caller promotes it.

  KEYS[1] the queue's served hash
  KEYS[2] the set of the queue's job names with waiting jobs
  KEYS[3] the sorted set of the jobs of this name waiting for a processor
  ARGV[1] job name
  ARGV[2] job id
  ARGV[3] now (ms)

  Returns 1 while nothing serves the name, 0 when the job was unfiled for promotion.
]]
local rcall = redis.call
local now = tonumber(ARGV[3])
local fields = rcall('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = string.match(fields[i], '|([^|]*)$')
  if tonumber(fields[i + 1]) > now and (name == ARGV[1] or name == '*') then
    rcall('ZREM', KEYS[3], ARGV[2])
    if rcall('ZCARD', KEYS[3]) == 0 then rcall('SREM', KEYS[2], ARGV[1]) end
    return 0
  end
end
return 1
