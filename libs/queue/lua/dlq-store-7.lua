--[[
  dlq-capture-9 for a Redis Cluster: the dead-letter keys only (one slot). The caller has checked
  that BullMQ's failed set holds the job as this failure, and writes the job's 'dead-lettered'
  event when this answers 1 (both in the queue's slot, which one script cannot reach from here).

  KEYS[1..7] and ARGV[1..6], ARGV[9..] as for dlq-capture-9 (ARGV[7], ARGV[8] unused).

  Returns 1 when stored; 0 when this failure is stored already; -1 when the id belongs to another
  failure.
]]
--- @include "store-dead-letter"
return storeDeadLetter(KEYS, ARGV, 9)
