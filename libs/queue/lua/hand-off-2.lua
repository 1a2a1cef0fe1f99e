--[[
  Hands a job that this replica cannot run to the replicas that serve its name: files it in the
  name's hand-off set and wakes each of those replicas on its own channel, so only they look. The
  caller has already moved the job to BullMQ's delayed set, until it comes back by itself (if no
  replica takes it: the one that serves the name stopped, or missed the wake-up). Filed after the
  move, so a replica that takes the job finds it delayed. See ProcessorWait.handOff.

  KEYS[1] the queue's served hash ("<replica>|<job name or *>" -> until, ms)
  KEYS[2] the sorted set of the jobs of this name handed off
  ARGV[1] job name
  ARGV[2] job id
  ARGV[3] when the job comes back by itself (ms), its score
  ARGV[4] now (ms)
  ARGV[5] the wake channel prefix ("<prefix>:_wake:"); a replica's channel is it plus its name
  ARGV[6] the wake-up message ("<queue>\n<job name>")

  Returns how many replicas were woken; 0 when none serves the name now, and nothing was filed.
]]
local rcall = redis.call
local now = tonumber(ARGV[4])
local fields = rcall('HGETALL', KEYS[1])
local replicas = {}
for i = 1, #fields, 2 do
  local replica, name = string.match(fields[i], '^(.*)|([^|]*)$')
  if tonumber(fields[i + 1]) > now and (name == ARGV[1] or name == '*') then replicas[replica] = true end
end
if next(replicas) == nil then return 0 end
rcall('ZADD', KEYS[2], ARGV[3], ARGV[2])
local woken = 0
for replica in pairs(replicas) do
  rcall('PUBLISH', ARGV[5] .. replica, ARGV[6])
  woken = woken + 1
end
return woken
