-- Many reservations of one account in one atomic step (ReserveBatch, ReserveStream). Each item is
-- decided by reserve_item in _prelude.lua, in order, exactly as reserve.lua would decide it.
--
-- KEYS[1..5] account state (see _prelude.lua); then per item i (0-based) KEYS[6 + 2i] its
-- idempotency record and KEYS[7 + 2i] its dedup mark
-- ARGV[1] now_ms   ARGV[2] mode   ARGV[3] pending_deadline_ms   ARGV[4] idem_ttl_ms
-- then per item 8 values: meter, amount (units), request hash, hold id, hold_expires_ms, dedup_window_ms,
-- feature ('' for none), attributes (JSON object)
-- Returns a JSON array with one answer per item (as reserve.lua), or {e = error} for the whole account.
local now = tonumber(ARGV[1])
local err, ctx = reserve_context(now)
if err then return err end
local out = {}
local n = (#ARGV - 4) / 8
for i = 0, n - 1 do
  local a = 5 + 8 * i
  out[#out + 1] = reserve_item(ctx, {mode = ARGV[2], meter = ARGV[a], amount = tonumber(ARGV[a + 1]),
                                     hash = ARGV[a + 2], hold_id = ARGV[a + 3], hold_exp = tonumber(ARGV[a + 4]),
                                     pend_deadline = tonumber(ARGV[3]), idem_ttl = tonumber(ARGV[4]),
                                     dedup_ms = tonumber(ARGV[a + 5]), idem_key = KEYS[6 + 2 * i],
                                     dedup_key = KEYS[7 + 2 * i], feature = ARGV[a + 6], attrs = ARGV[a + 7]})
end
return '[' .. table.concat(out, ',') .. ']'
