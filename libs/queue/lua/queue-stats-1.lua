--[[
  Reads what the monitor shows of each queue, for many queues in one call. Changes nothing.

  KEYS[1] a key of the first queue (on one server, any key): not read, it names the slot the
          script runs in. On a Redis Cluster each queue has a slot of its own, so the caller
          asks one queue per call.
  ARGV[1] now, ms
  ARGV[2..] triples per queue: its BullMQ key base ("<queue prefix>:<queue>:"), its set of job
          names waiting for a processor ("<queue prefix>:_parked:<queue>"), and its dead-letter
          index ('' on a Redis Cluster, where that is in the dead letters' slot: dead_lettered
          is then 0 and the caller counts it)

  Returns one entry per queue, in order:
    { waiting, delayed, due, prioritized, active, waiting_children, completed, failed,
      dead_lettered, waiting_for_processor, paused (1/0), oldest_ready_ms (-1: none) }
  where `delayed` leaves out the jobs waiting for a processor (BullMQ holds those as delayed,
  see park-job-6.lua), `due` counts the delayed jobs whose time has come but that BullMQ has not
  promoted yet, and `oldest_ready_ms` is when the longest-waiting job became ready: the oldest
  of the wait list's oldest job, the first due delayed job, and of the prioritized jobs the first
  of the highest priority and the first of the lowest (the one most likely starved; BullMQ scores
  a prioritized job priority * 2^32 + its arrival counter).
]]
local rcall = redis.call
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 3 do
  local b, parkedNames, dlq = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local parked = 0
  for _, name in ipairs(rcall('SMEMBERS', parkedNames)) do
    parked = parked + rcall('ZCARD', parkedNames .. ':' .. name)
  end
  -- A delayed job's score is its due time * 0x1000 plus an order within the millisecond.
  local dueBelow = now * 0x1000
  local oldest = -1
  local function consider(id)
    if not id then return end
    local h = rcall('HMGET', b .. id, 'timestamp', 'delay')
    if h[1] then
      local ready = tonumber(h[1]) + (tonumber(h[2]) or 0)
      if oldest < 0 or ready < oldest then oldest = ready end
    end
  end
  consider(rcall('LINDEX', b .. 'wait', -1))
  consider(rcall('ZRANGE', b .. 'prioritized', 0, 0)[1])
  local last = rcall('ZRANGE', b .. 'prioritized', -1, -1, 'WITHSCORES')
  if last[2] then
    local lowest = math.floor(tonumber(last[2]) / 0x100000000) * 0x100000000
    consider(rcall('ZRANGEBYSCORE', b .. 'prioritized', lowest, '+inf', 'LIMIT', 0, 1)[1])
  end
  local first = rcall('ZRANGE', b .. 'delayed', 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) < dueBelow then
    local due = math.floor(tonumber(first[2]) / 0x1000)
    if oldest < 0 or due < oldest then oldest = due end
  end
  out[#out + 1] = {
    rcall('LLEN', b .. 'wait'),
    rcall('ZCARD', b .. 'delayed') - parked,
    rcall('ZCOUNT', b .. 'delayed', '-inf', '(' .. dueBelow),
    rcall('ZCARD', b .. 'prioritized'),
    rcall('LLEN', b .. 'active'),
    rcall('ZCARD', b .. 'waiting-children'),
    rcall('ZCARD', b .. 'completed'),
    rcall('ZCARD', b .. 'failed'),
    dlq ~= '' and rcall('ZCARD', dlq) or 0,
    parked,
    rcall('HEXISTS', b .. 'meta', 'paused'),
    oldest,
  }
end
return out
