--[[
  Takes jobs out of a name's hand-off set once a replica took them (promoted them), or found them
  no longer delayed (they came back by themselves, ran, or are gone): each only if its score is
  still the one read, since a job handed off again meanwhile was filed anew, with a later score.

  KEYS[1] the sorted set of the jobs of this name handed off
  ARGV pairs: job id, score as read

  Returns how many were taken out.
]]
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
