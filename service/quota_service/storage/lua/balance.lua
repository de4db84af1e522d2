-- Read an account's grants after returning expired holds (R1), and the account's meters: every
-- bucket known to it (a meter or wallet with a grant, live or ended, or with a policy), so that a
-- balance lists them all, zeros included (R1, FB8).
--
-- KEYS[1..5] account state (see _prelude.lua)
-- ARGV[1] now_ms
-- Returns JSON {err = code} or {st status, ep epoch, g {id: grant}, k [bucket], al {meter: [pct]}}:
-- al holds the alert thresholds (percent left) of each meter whose policy has any, for its banners.
local now = tonumber(ARGV[1])
if not_loaded() then return err_answer('NOT_LOADED') end
if pending_overdue(now) then return err_answer('RELOAD') end
local grants = expire_due(now, nil) or load_grants()
for _, g in pairs(grants) do g.id = nil end
local known = {}
local alerts = {}
local meta = redis.call('HGETALL', KEYS[1])
for i = 1, #meta, 2 do
  local field = meta[i]
  local bucket = bucket_of_field(field)
  if bucket then known[bucket] = true end
  if string.sub(field, 1, 4) == 'pol:' then
    local al = dec(meta[i + 1]).al
    if al and #al > 0 then alerts[bucket] = al end
  end
end
local buckets = {}
for b in pairs(known) do buckets[#buckets + 1] = b end
table.sort(buckets)
-- cjson writes an empty table as {}: the service reads a missing or empty k or al as none
return enc({st = redis.call('HGET', KEYS[1], 'st'), ep = tonumber(redis.call('HGET', KEYS[1], 'ep')),
            g = grants, k = buckets, al = alerts})
