--[[
  Records a replay on its dead letter, once: a replay whose job is recorded already (the
  scheduler deduplicated it: an earlier replay made the job) is not added again.

  KEYS[1] the record
  ARGV[1] the replay (JSON of jobmesh.v1.Replay)
  ARGV[2] the replay's queue
  ARGV[3] the replay's job id

  Returns 1 when recorded, 2 when it was recorded already, 0 when the dead letter is gone.
]]
local replays = redis.call('HGET', KEYS[1], 'replays')
if not replays then return 0 end
local list = cjson.decode(replays)
for _, r in ipairs(list) do
  if r.job and r.job.queue == ARGV[2] and r.job.id == ARGV[3] then return 2 end
end
table.insert(list, cjson.decode(ARGV[1]))
redis.call('HSET', KEYS[1], 'replays', cjson.encode(list))
return 1
