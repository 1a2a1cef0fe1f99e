--[[
  Gives back what an active job's fetch took from its queue's rate limit, for a job set aside
  without running (see includes/refund-rate-limit).

  KEYS[1] BullMQ's rate limiter key of the queue
  KEYS[2] the job's hash
  ARGV[1] the queue's rate limit: jobs per window (0: none)
  ARGV[2] the rate limit's window (ms)
  ARGV[3] now (ms)

  Returns 1 when the count was given back, else 0.
]]
--- @include "refund-rate-limit"
return refundRateLimit(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
