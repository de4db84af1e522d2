-- Read an account's grants after returning expired holds (R1).
--
-- KEYS[1..5] account state (see _prelude.lua)
-- ARGV[1] now_ms
-- Returns JSON {e = error} or {st status, ep epoch, g {id: grant}}.
local now = tonumber(ARGV[1])
if not_loaded() then return enc({e = 'NOT_LOADED'}) end
if pending_overdue(now) then return enc({e = 'RELOAD'}) end
local grants = expire_due(now, nil) or load_grants()
for _, g in pairs(grants) do g.id = nil end
return enc({st = redis.call('HGET', KEYS[1], 'st'), ep = tonumber(redis.call('HGET', KEYS[1], 'ep')),
            g = grants})
