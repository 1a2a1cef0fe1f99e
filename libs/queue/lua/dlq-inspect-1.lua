--[[
  Reads what a batch operation needs to know of dead letters, in one call: whether each exists,
  and the fields that decide what happens to it. Changes nothing.

  KEYS[1] the index of every dead letter: not read, it names the slot of the records (on a Redis
          Cluster they all share it, and a script runs where its keys live)
  ARGV[1] the record key prefix ("<prefix>:_dlq:r:"; a record is that plus the dead letter id)
  ARGV[2..] pairs: a dead letter id, and its queue's BullMQ failed set ('' when not wanted; always
          '' on a Redis Cluster, where the failed set is in its queue's slot: the caller asks it)

  Returns one entry per pair, in order: 0 when the dead letter does not exist, else
  { queue, category, failure time, quarantined ('1'/'0'), held } where held is 1 when the
  failed set still holds the job as this very failure (its score is the failure time), so
  BullMQ's copy is the one the dead letter was made from.
]]
local rcall = redis.call
local out = {}
for i = 2, #ARGV, 2 do
  local id, failed = ARGV[i], ARGV[i + 1]
  local h = rcall('HMGET', ARGV[1] .. id, 'queue', 'category', 'at', 'quarantined')
  if not h[1] then
    out[#out + 1] = 0
  else
    local held = 0
    if failed ~= '' then
      -- The job id is the dead letter id without its queue and ":<attempt>[~<time>]".
      local job = string.match(id, '^[^:]*:(.*):[^:]*$')
      if job and rcall('ZSCORE', failed, job) == h[3] then held = 1 end
    end
    out[#out + 1] = { h[1], h[2], h[3], h[4] or '0', held }
  end
end
return out
