--[[
  Counts one queue's backlog of some job names only, for scaling a worker deployment on the
  names it serves. Changes nothing.

  KEYS[1] a key of the queue: not read, it names the queue's slot (on a Redis Cluster the script
          runs where its keys live)
  ARGV[1] the queue's BullMQ key base ("<queue prefix>:<queue>:")
  ARGV[2] the queue's set of job names waiting for a processor ("<queue prefix>:_parked:<queue>")
  ARGV[3] now, ms
  ARGV[4] how many jobs of each list to look at, at most (the rest is estimated from them)
  ARGV[5..] the job names

  Returns { waiting, prioritized, due_delayed, active, waiting_for_processor }, each as
  { matched, looked_at, total }: of the `looked_at` jobs read from the list (its oldest first),
  `matched` have one of the names, out of `total` in the list. Jobs waiting for a processor are
  counted exactly (their index is per name); a job on its way there (in the index, not yet moved
  out of active) is counted there only.
]]
local rcall = redis.call
local b, parkedNames, now, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end

local function count(ids, total)
  local matched = 0
  for _, id in ipairs(ids) do
    local name = rcall('HGET', b .. id, 'name')
    if name and wanted[name] and not rcall('ZSCORE', parkedNames .. ':' .. name, id) then matched = matched + 1 end
  end
  return { matched, #ids, total }
end

local dueBelow = now * 0x1000
local parked = 0
for i = 5, #ARGV do parked = parked + rcall('ZCARD', parkedNames .. ':' .. ARGV[i]) end

return {
  -- The wait list's oldest jobs are at its tail.
  count(rcall('LRANGE', b .. 'wait', -cap, -1), rcall('LLEN', b .. 'wait')),
  count(rcall('ZRANGE', b .. 'prioritized', 0, cap - 1), rcall('ZCARD', b .. 'prioritized')),
  count(rcall('ZRANGEBYSCORE', b .. 'delayed', '-inf', '(' .. dueBelow, 'LIMIT', 0, cap), rcall('ZCOUNT', b .. 'delayed', '-inf', '(' .. dueBelow)),
  count(rcall('LRANGE', b .. 'active', 0, cap - 1), rcall('LLEN', b .. 'active')),
  { parked, parked, parked },
}
