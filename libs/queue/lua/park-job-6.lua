--[[
  Files an active job as waiting for a processor, unless a replica serves its name now; the caller
  then moves it to BullMQ's delayed set until its deadline and asks again (recheck-parked-3).
  The calling replica's own entries count too: it found nothing to run the job a moment ago, but
  a worker may have connected to it since.
  Filed first, then moved, then asked again: a replica that starts serving the name publishes it to
  the served hash before it promotes the waiting set, so either this check or the recheck sees it
  served, or the promotion finds the job filed (and, if it is not delayed yet, leaves it filed for
  the recheck to settle). See ProcessorWait in processor-wait.ts.
  A filed job gives back what its fetch took from the queue's rate limit (includes/refund-rate-limit):
  a job waiting for a processor must not hold up those that have one.

  KEYS[1] the queue's served hash ("<replica>|<job name or *>" -> until, ms)
  KEYS[2] the set of the queue's job names with waiting jobs
  KEYS[3] the sorted set of the jobs of this name waiting for a processor
  KEYS[4] the queue's event stream
  KEYS[5] the job's hash
  KEYS[6] BullMQ's rate limiter key of the queue
  ARGV[1] job name
  ARGV[2] job id
  ARGV[3] deadline (ms)
  ARGV[4] now (ms)
  ARGV[5] the queue's rate limit: jobs per window (0: none)
  ARGV[6] the rate limit's window (ms)

  Returns 1 when filed (and a 'waiting-for-processor' event written, which WatchJob reports), 0
  when a replica serves the name. Entries past their time are dropped on the way: they
  belong to replicas that stopped.
]]
--- @include "refund-rate-limit"
local rcall = redis.call
local now = tonumber(ARGV[4])
local fields = rcall('HGETALL', KEYS[1])
local served = false
for i = 1, #fields, 2 do
  local name = string.match(fields[i], '|([^|]*)$')
  if tonumber(fields[i + 1]) <= now then
    rcall('HDEL', KEYS[1], fields[i])
  elseif name == ARGV[1] or name == '*' then
    served = true
  end
end
if served then return 0 end
rcall('SADD', KEYS[2], ARGV[1])
rcall('ZADD', KEYS[3], ARGV[3], ARGV[2])
rcall('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'event', 'waiting-for-processor', 'jobId', ARGV[2], 'until', ARGV[3])
refundRateLimit(KEYS[6], KEYS[5], tonumber(ARGV[5]), tonumber(ARGV[6]), now)
return 1
