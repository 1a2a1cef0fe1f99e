--[[
  Stores a dead letter that is not stored yet: the record, its three index entries, its counter,
  the job -> dead letter link, its outbox entry and the announcement to watchers. Every key is a
  dead-letter key (one slot on a Redis Cluster).

  keys  the record, the index of every dead letter, the queue's index, the category's index, the
        counters, the job links, the outbox (KEYS[1..7] of dlq-capture-9)
  a     at, id, counter field, job link field, now, channel (ARGV[1..6] of dlq-capture-9)
  from  where the record's fields and values start in ARGV

  Returns 1 when stored; 0 when this failure is stored already; -1 when the id belongs to another
  failure (a job id used again).
]]
local function storeDeadLetter(keys, a, from)
  local rcall = redis.call
  if rcall('EXISTS', keys[1]) == 1 then
    if rcall('HGET', keys[1], 'at') == a[1] then return 0 end
    return -1
  end
  rcall('HSET', keys[1], unpack(ARGV, from))
  rcall('ZADD', keys[2], a[1], a[2])
  rcall('ZADD', keys[3], a[1], a[2])
  rcall('ZADD', keys[4], a[1], a[2])
  rcall('HINCRBY', keys[5], a[3], 1)
  rcall('HSET', keys[6], a[4], a[1] .. ':' .. a[2])
  rcall('ZADD', keys[7], a[5], a[2])
  rcall('PUBLISH', a[6], a[2])
  return 1
end
