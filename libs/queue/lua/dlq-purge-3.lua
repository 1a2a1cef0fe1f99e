--[[
  Deletes dead letters, each with its index entries, its counter and, if it still points at it,
  its job's link, in one step for the whole batch. A dead letter gone already is passed over.

  KEYS[1] the index of every dead letter
  KEYS[2] the counters (hash, "<queue>|<category>" -> count)
  KEYS[3] the job links (hash, "<queue>:<job id>" -> "<failure time>:<dead letter id>")
  ARGV[1] the record key prefix ("<prefix>:_dlq:r:")
  ARGV[2] the queue index key prefix ("<prefix>:_dlq:q:")
  ARGV[3] the category index key prefix ("<prefix>:_dlq:c:")
  ARGV[4..] the dead letter ids

  Returns how many were deleted.
]]
local rcall = redis.call
local deleted = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local record = ARGV[1] .. id
  local h = rcall('HMGET', record, 'queue', 'category', 'counter')
  if h[1] then
    rcall('DEL', record)
    rcall('ZREM', KEYS[1], id)
    rcall('ZREM', ARGV[2] .. h[1], id)
    rcall('ZREM', ARGV[3] .. h[2], id)
    if rcall('HINCRBY', KEYS[2], h[3], -1) <= 0 then rcall('HDEL', KEYS[2], h[3]) end
    -- The job's link is "<failure time>:<dead letter id>"; the job is the id without ":<attempt>".
    local job = string.match(id, '^(.*):[^:]*$')
    local link = job and rcall('HGET', KEYS[3], job)
    if link and string.sub(link, string.find(link, ':', 1, true) + 1) == id then rcall('HDEL', KEYS[3], job) end
    deleted = deleted + 1
  end
end
return deleted
