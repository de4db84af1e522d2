-- Many reservations of one account in one atomic step (a unary call, ReserveBatch, ReserveStream).
-- Each item is decided by reserve_item in _reserve.lua, in order, exactly as reserve.lua would decide it.
--
-- KEYS[1..5] account state (see _prelude.lua); then per item i (0-based) KEYS[6 + 2i] its
-- idempotency record and KEYS[7 + 2i] its dedup mark
-- ARGV[1] now_ms   ARGV[2] mode   ARGV[3] pending_deadline_ms   ARGV[4] idem_ttl_ms
-- then per item 8 values: meter, amount (units), request hash, hold id, hold_expires_ms, dedup_window_ms,
-- feature ('' for none), attributes (JSON object)
-- Returns a JSON array with one answer per item (as reserve.lua), or {err = code} for the whole account
-- (NOT_LOADED). An account that must be rebuilt first answers each item's replay, and RELOAD for the others.
local now = tonumber(ARGV[1])
local mode = ARGV[2]
if not_loaded() then return err_answer('NOT_LOADED') end
local overdue = pending_overdue(now)
local ctx = nil
if not overdue then ctx = account_context(now) end
local out = {}
local n = (#ARGV - 4) / 8
for i = 0, n - 1 do
  local a = 5 + 8 * i
  if overdue then
    -- a replay is answered before anything else, even on an account that must be rebuilt
    local replay = mode ~= 'check' and idem_lookup(KEYS[6 + 2 * i], ARGV[a + 2], now)
    out[#out + 1] = replay or err_answer('RELOAD')
  else
    out[#out + 1] = reserve_item(ctx, {mode = mode, meter = ARGV[a], amount = tonumber(ARGV[a + 1]),
                                       hash = ARGV[a + 2], hold_id = ARGV[a + 3], hold_exp = tonumber(ARGV[a + 4]),
                                       pend_deadline = tonumber(ARGV[3]), idem_ttl = tonumber(ARGV[4]),
                                       dedup_ms = tonumber(ARGV[a + 5]), idem_key = KEYS[6 + 2 * i],
                                       dedup_key = KEYS[7 + 2 * i], feature = ARGV[a + 6], attrs = ARGV[a + 7]})
  end
end
return '[' .. table.concat(out, ',') .. ']'
