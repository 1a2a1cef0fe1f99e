--[[
  Quarantines or releases dead letters, all or nothing: when one of them does not exist, nothing
  changes.

  KEYS[1] the index of every dead letter: not read, it names the slot of the records (see
          dlq-inspect-1)
  ARGV[1] the record key prefix ("<prefix>:_dlq:r:")
  ARGV[2] '1' to quarantine, '0' to release
  ARGV[3] the reason
  ARGV[4..] the dead letter ids

  Returns how many changed (those in that state already do not count), or { 'missing', id }
  naming the first that does not exist.
]]
local rcall = redis.call
for i = 4, #ARGV do
  if rcall('EXISTS', ARGV[1] .. ARGV[i]) == 0 then return { 'missing', ARGV[i] } end
end
local changed = 0
for i = 4, #ARGV do
  local record = ARGV[1] .. ARGV[i]
  if rcall('HGET', record, 'quarantined') ~= ARGV[2] then
    rcall('HSET', record, 'quarantined', ARGV[2], 'quarantine_reason', ARGV[3])
    changed = changed + 1
  end
end
return changed
