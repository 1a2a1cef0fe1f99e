--[[
  Gives back what a job took from its queue's rate limit when BullMQ fetched it, for a job set
  aside without running (waiting for a processor, or handed to a replica that serves its name).
  BullMQ counts a job against the limit when it moves it to active (prepareJobForProcessing:
  INCR "<queue>:limiter", which expires one window after the window's first job), whatever the
  worker then does with it; without this, jobs no replica can run here would use up the limit of
  the jobs that can run.

  The count is given back only to the window the job was counted in: it is positive and at most
  the limit (above it, a back-off, JobRunner.backOff, holds the key), and the window began no later
  than the fetch (processedOn, written by the fetching replica, the one calling this, so one
  clock), with 50 ms of slack for the round trips between the two readings. A window that starts
  over at 0 starts at its next counted job, as BullMQ's PEXPIRE on the first INCR does.

  limiterKey  BullMQ's "<prefix>:<queue>:limiter"
  jobKey      the job's hash
  max         the limit's jobs per window (0: no limit, nothing to give back)
  durationMs  the limit's window
  now         ms, the caller's clock
]]
local function refundRateLimit(limiterKey, jobKey, max, durationMs, now)
  if max <= 0 or durationMs <= 0 then return 0 end
  local count = tonumber(redis.call('GET', limiterKey) or '0')
  if count <= 0 or count > max then return 0 end
  local pttl = redis.call('PTTL', limiterKey)
  if pttl < 0 then return 0 end
  local windowStart = now - (durationMs - pttl)
  local fetchedAt = tonumber(redis.call('HGET', jobKey, 'processedOn') or '0')
  if fetchedAt + 50 < windowStart then return 0 end
  redis.call('DECR', limiterKey)
  return 1
end
