-- Commit a hold with its actual amount, or Release it (H2).
--
-- KEYS[1..5] account state (see _prelude.lua); KEYS[6] idempotency record
-- ARGV[1] now_ms
-- ARGV[2] op                  'commit' or 'release'
-- ARGV[3] hold id
-- ARGV[4] actual amount       units used (commit); ignored for release
-- ARGV[5] request fingerprint  "<hash>.<digests>" (domain.model.request_fingerprint)
-- ARGV[6] pending_deadline_ms
-- ARGV[7] idem_ttl_ms
-- Returns JSON: {err = code, ...} or a decision whose rows carry per-grant deltas {g, b, du used, dh held}.
-- Units given back come off the overage first (refunding its money), then off the unit grants
-- in reverse consumption order. A commit above the hold takes the difference like a reservation,
-- but at the hold's price (hold.pr, the price in force when it was taken: its price table entry or
-- its interval's price) in the hold's wallet, and straight from the wallet when every unit of the
-- hold was (an always-charged feature); if that is not available the hold is left as it was.

-- Per-grant deltas of used (du) and held (dh) units, in the order grants are first touched.
-- Returns the function that adds to them and the ordered list.
local function new_deltas()
  local by_grant, order = {}, {}
  local function add(gid, bucket, du, dh)
    local d = by_grant[gid]
    if not d then
      d = {g = gid, b = bucket, du = 0, dh = 0}
      by_grant[gid] = d
      order[#order + 1] = d
    end
    d.du = d.du + du
    d.dh = d.dh + dh
  end
  return add, order
end

-- Give back (hold.amt - actual): overage units first (their money is refunded), then unit grants,
-- newest part first. Returns the overage money kept (minor units).
local function give_back(hold, actual, unit_rows, wallet_rows, add)
  local back = hold.amt - actual
  local back_ov = math.min(back, hold.ou)
  local refund = back_ov * hold.pr
  local back_units = back - back_ov
  local overage_minor = 0
  for i = #wallet_rows, 1, -1 do
    local r = wallet_rows[i]
    local give = math.min(refund, r.a)
    refund = refund - give
    local keep = r.a - give
    if keep > 0 then add(r.g, r.b, keep, 0) end
    overage_minor = overage_minor + keep
  end
  for i = #unit_rows, 1, -1 do
    local r = unit_rows[i]
    local give = math.min(back_units, r.a)
    back_units = back_units - give
    if r.a - give > 0 then add(r.g, r.b, r.a - give, 0) end
  end
  return overage_minor
end

-- Everything held is used, and the extra (actual - hold.amt) is taken like a reservation; what the
-- grants cannot cover costs what the hold's units cost (the price in force when it was taken), in
-- the hold's wallet. Returns the overage money (minor units), or nil and the units available.
local function take_extra(grants, hold, actual, currency, now, add)
  local overage_minor = 0
  for _, r in ipairs(hold.rows) do
    add(r.g, r.b, r.a, 0)
    if r.b ~= hold.m then overage_minor = overage_minor + r.a end
  end
  -- the hold's own units are still counted as held, so they are not offered twice
  local extra = actual - hold.amt
  local parts, short
  if hold.amt > 0 and hold.ou >= hold.amt then
    parts, short = {}, extra  -- every unit of the hold was paid from the wallet (always charged): so is the extra
  else
    parts, short = plan_take(ordered(grants, hold.m, now), extra)
  end
  if short > 0 then
    local price = hold.pr or 0
    if price <= 0 or currency == '' then return nil, extra - short end
    local wparts, cost = pay_overage(grants, currency, short, price, now)
    if not wparts then return nil, extra - short end
    for _, p in ipairs(wparts) do parts[#parts + 1] = p end
    overage_minor = overage_minor + cost
  end
  for _, p in ipairs(parts) do add(p.g, p.b, p.a, 0) end
  return overage_minor
end

-- The hold's deltas and overage money for `actual` units used; nil and the units available when a
-- commit above the hold cannot be paid. Also returns the wallet the overage is paid from.
local function hold_outcome(grants, hold, pol, actual, now, add)
  -- units of the hold drawn from unit grants vs. paid as overage; every held unit leaves "held"
  local unit_rows, wallet_rows = {}, {}
  for _, r in ipairs(hold.rows) do
    add(r.g, r.b, 0, -r.a)
    if r.b == hold.m then unit_rows[#unit_rows + 1] = r else wallet_rows[#wallet_rows + 1] = r end
  end
  -- the wallet the hold's overage is paid from (a hold without overage: the policy's)
  local currency = (pol.pt and pol.pt.cu) or pol.c
  for _, r in ipairs(wallet_rows) do currency = string.sub(r.b, 2) end
  if actual <= hold.amt then return give_back(hold, actual, unit_rows, wallet_rows, add), currency end
  local overage_minor, avail = take_extra(grants, hold, actual, currency, now, add)
  if not overage_minor then return nil, currency, avail end
  return overage_minor, currency
end

local function resolve(now, op, hid, actual_arg, hash)
  if not_loaded() then return err_answer('NOT_LOADED') end
  local epoch = tonumber(redis.call('HGET', KEYS[1], 'ep'))
  local replay = idem_lookup(KEYS[6], hash, now)
  if replay then return replay end
  if pending_overdue(now) then return err_answer('RELOAD') end
  local grants = expire_due(now, nil) or load_grants()
  local raw = redis.call('HGET', KEYS[3], hid)
  if not raw then return err_answer('NO_HOLD') end
  local hold = dec(raw)
  local meter = hold.m
  local pol = policy(meter)
  if pol.cap and op == 'commit' then return err_answer('CAPACITY') end  -- a seat is released, not used
  local actual = op == 'release' and 0 or tonumber(actual_arg)
  local granted, before = meter_totals(grants, meter, now)
  local add, order = new_deltas()
  local overage_minor, currency, avail = hold_outcome(grants, hold, pol, actual, now, add)
  if not overage_minor then return err_answer('OVER', {avail = avail}) end
  for _, d in ipairs(order) do
    local g = grants[d.g]
    if g then
      g.u = g.u + d.du
      g.h = g.h + d.dh
      save_grant(g)
    end
  end
  redis.call('HDEL', KEYS[3], hid)
  redis.call('ZREM', KEYS[4], hid)
  if actual == 0 then drop_dedup_mark(hold) end
  local _, after = meter_totals(grants, meter, now)
  local answer = {st = 'G', rs = '', ac = after > 0 and 0 or pol.x, amt = op == 'release' and hold.amt or actual,
                  dd = false, ov = overage_minor, oc = overage_minor > 0 and currency or '', rows = order,
                  al = crossed(pol, meter, pct(granted, before), pct(granted, after)),
                  lf = lifted(pol, meter, pct(granted, before), pct(granted, after)),
                  ep = epoch, sq = next_seq(), hid = hid, exp = 0, rem = after, pct = pct(granted, after),
                  m = meter}
  local out = enc(answer)
  redis.call('ZADD', KEYS[5], tonumber(ARGV[6]), KEYS[6])
  idem_store(KEYS[6], hash, out, 'p', tonumber(ARGV[7]))
  return out
end

return resolve(tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5])
