-- Reserve, Consume or Check units of one meter (H1, H3, H6). The decision is reserve_item in
-- _reserve.lua, shared with reserve_many.lua.
--
-- KEYS[1..5] account state (see _prelude.lua); KEYS[6] idempotency record; KEYS[7] dedup mark
-- ARGV[1]  now_ms           service clock, ms since the epoch
-- ARGV[2]  mode             'reserve' (hold), 'consume' (charge now) or 'check' (dry run, no writes)
-- ARGV[3]  meter
-- ARGV[4]  amount           units, > 0
-- ARGV[5]  request hash     the request fingerprint bound to the idempotency key ("<hash>.<digests>")
-- ARGV[6]  hold id          id for the new hold (reserve)
-- ARGV[7]  hold_expires_ms  when the hold expires (reserve)
-- ARGV[8]  pending_deadline_ms  when an unconfirmed mutation forces a rebuild
-- ARGV[9]  idem_ttl_ms      how long the idempotency record is kept
-- ARGV[10] dedup_window_ms  0 = no dedup; else the window that starts at this charge
-- ARGV[11] feature          '' or what the units are for; the meter's policy may restrict or price it
-- ARGV[12] attributes       JSON object of the request's attributes (a unique meter builds its key from them)
-- Returns a JSON answer: {err = code, ...}, {rp = stored answer} (a replay), or a decision {st 'G'|'D', ...}.
local now = tonumber(ARGV[1])
if ARGV[2] ~= 'check' then
  -- a replay is answered before anything else, even on an account that must be rebuilt
  if not_loaded() then return err_answer('NOT_LOADED') end
  local replay = idem_lookup(KEYS[6], ARGV[5], now)
  if replay then return replay end
end
local err, ctx = reserve_context(now)
if err then return err end
return reserve_item(ctx, {mode = ARGV[2], meter = ARGV[3], amount = tonumber(ARGV[4]), hash = ARGV[5],
                          hold_id = ARGV[6], hold_exp = tonumber(ARGV[7]), pend_deadline = tonumber(ARGV[8]),
                          idem_ttl = tonumber(ARGV[9]), dedup_ms = tonumber(ARGV[10]), idem_key = KEYS[6],
                          dedup_key = KEYS[7], feature = ARGV[11] or '', attrs = ARGV[12]})
