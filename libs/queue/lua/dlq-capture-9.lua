--[[
  Stores a dead letter: the record, its three index entries, its counter, the job -> dead letter
  link, its outbox entry, the job's 'dead-lettered' event and the announcement to watchers, all
  or nothing and once. A second capture of the same failure (another replica, the sweep after
  the event) changes nothing, and a capture is never stored without being announced.

  KEYS[1] the record (hash)
  KEYS[2] the index of every dead letter (zset, score = failure time)
  KEYS[3] the queue's index
  KEYS[4] the category's index
  KEYS[5] the counters (hash, "<queue>|<category>" -> count)
  KEYS[6] the job links (hash, "<queue>:<job id>" -> "<failure time>:<dead letter id>")
  KEYS[7] the outbox (zset, score = capture time)
  KEYS[8] the queue's event stream
  KEYS[9] the queue's BullMQ failed set
  ARGV[1] the failure time (ms; the job's score in the failed set)
  ARGV[2] the dead letter id
  ARGV[3] the counter field
  ARGV[4] the job link field
  ARGV[5] now (ms)
  ARGV[6] the announcement channel
  ARGV[7] the job id
  ARGV[8] the failure reason
  ARGV[9..] the record's fields and values

  Returns 1 when stored; 0 when this failure is stored already; -1 when the id belongs to another
  failure (a job id used again); -2 when the job is no longer this failure in the failed set
  (retried, removed).

  On a Redis Cluster the failed set and the event stream are in the queue's slot, the rest in the
  dead letters' slot: dlq-store-7 stores, and the caller checks and writes the event around it.
]]
--- @include "store-dead-letter"
local rcall = redis.call
if rcall('ZSCORE', KEYS[9], ARGV[7]) ~= ARGV[1] then return -2 end
local stored = storeDeadLetter(KEYS, ARGV, 9)
if stored == 1 then
  rcall('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'event', 'dead-lettered', 'jobId', ARGV[7], 'reason', ARGV[8])
end
return stored
