--[[
  One page of a dead-letter index in ascending (score, id) order, after a cursor. Pages by
  position, not offset, so entries added or deleted meanwhile (captures, purges, the caller's own
  purge of the page before) never make a reader skip or repeat one; many entries with one score
  (jobs that failed in the same millisecond) are paged through like any others.

  KEYS[1] the index (zset, score = failure time in ms)
  ARGV[1] the lowest score wanted (inclusive; a number or '-inf')
  ARGV[2] the highest score wanted (inclusive; a number or '+inf')
  ARGV[3] the page size
  ARGV[4] the cursor's score ('' to start at ARGV[1])
  ARGV[5] the cursor's id: the page starts after (score, id)

  Returns id, score, id, score, ...
]]
local rcall = redis.call
local key, limit = KEYS[1], tonumber(ARGV[3])
local max = ARGV[2] == '+inf' and math.huge or tonumber(ARGV[2])
if ARGV[4] == '' then
  return rcall('ZRANGEBYSCORE', key, ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0, limit)
end
local score, id = ARGV[4], ARGV[5]
local out = {}
if rcall('ZSCORE', key, id) == score then
  -- The cursor's entry is still there: the page is the entries right after it.
  local rank = rcall('ZRANK', key, id)
  local next = rcall('ZRANGE', key, rank + 1, rank + limit, 'WITHSCORES')
  for i = 1, #next, 2 do
    if tonumber(next[i + 1]) > max then break end
    out[#out + 1] = next[i]
    out[#out + 1] = next[i + 1]
  end
  return out
end
-- It is gone: the entries of its score that sort after it, then those of higher scores.
for _, m in ipairs(rcall('ZRANGEBYSCORE', key, score, score)) do
  if #out >= 2 * limit then return out end
  if m > id then
    out[#out + 1] = m
    out[#out + 1] = score
  end
end
if #out < 2 * limit then
  local rest = rcall('ZRANGEBYSCORE', key, '(' .. score, ARGV[2], 'WITHSCORES', 'LIMIT', 0, limit - math.floor(#out / 2))
  for i = 1, #rest do out[#out + 1] = rest[i] end
end
return out
