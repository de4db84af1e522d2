-- Replace an account's state with a snapshot read from Postgres (N3).
--
-- KEYS[1..5] account state (see _prelude.lua)
-- ARGV[1] epoch        the snapshot's epoch; a state already at this epoch or newer is kept
-- ARGV[2] snapshot     JSON {st status, pol {meter: policy}, k [buckets], g {id: grant},
--                      h {id: hold}, d [[dedup key name, window_end_ms, ttl_ms]],
--                      lost: ms when the state was found missing (absent when it was only refreshed),
--                      ce: the current billing cycle's end ms (0: no subscription)}
-- Returns 'LOADED' or 'KEPT'.
local epoch = tonumber(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'ep')
if current and tonumber(current) >= epoch then return 'KEPT' end
local lost_before = redis.call('HGET', KEYS[1], 'lost')

-- Idempotency records of mutations that were never confirmed may describe effects Postgres
-- does not have (or has: the process may have died between its commit and the confirmation).
-- Their answers are dropped and the ledger decides: a retry is decided afresh, Postgres rejects a
-- duplicate mutation, and a fresh decision that changes nothing (a denial, a dedup hit) is checked
-- against the ledger's answer for the key (state 'l', see idem_lookup). The snapshot was read under a
-- new epoch, so the ledger's answer for these keys is final (N11).
for _, key in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  local raw = redis.call('GET', key)
  if raw then
    redis.call('SET', key, enc({fp = idem_record(raw).fp, state = 'l'}), 'KEEPTTL')
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])

local snap = dec(ARGV[2])
redis.call('HSET', KEYS[1], 'ep', epoch, 'sq', 0, 'st', snap.st, 'ce', snap.ce or 0)
-- state was lost (flushed, evicted, restarted empty): answers kept only in Redis went with it
if snap.lost or lost_before then redis.call('HSET', KEYS[1], 'lost', snap.lost or lost_before) end
for meter, pol in pairs(snap.pol) do redis.call('HSET', KEYS[1], policy_field(meter), enc(pol)) end
for _, bucket in ipairs(snap.k) do redis.call('HSET', KEYS[1], known_field(bucket), 1) end
for id, g in pairs(snap.g) do redis.call('HSET', KEYS[2], id, enc(g)) end
for id, h in pairs(snap.h) do
  redis.call('HSET', KEYS[3], id, enc(h))
  redis.call('ZADD', KEYS[4], h.exp, id)
end
for _, d in ipairs(snap.d) do
  redis.call('SET', d[1], mark_value(d[2], epoch), 'PX', d[3])
end
return 'LOADED'
