-- The decision of one reservation (H1, H3, H6), shared by reserve.lua and reserve_many.lua, in
-- named parts: the account's context, the feature's charge mode, the price table, the unique
-- meter's key and its dedup mark, the take across grants with its overage, and the answer with its
-- alerts. Prepended to every script after _prelude.lua.
--
-- A decision under way `d`: {ctx, it, pol (the meter's policy), writes (not a dry run), ask_ledger,
-- granted and before (the meter's units before it), dedup_ms and dedup_key (the mark it may set),
-- pt_business (a price table's per-conversation key), answer (the JSON answer being built)}.

-- The context of an account's reservations, once it is known to be loaded with no overdue
-- mutation: due holds returned, then {now, epoch, grants, status}.
local function account_context(now)
  local grants = expire_due(now, nil) or load_grants()
  return {now = now, epoch = tonumber(redis.call('HGET', KEYS[1], 'ep')), grants = grants,
          status = redis.call('HGET', KEYS[1], 'st')}
end

-- The account-wide part of a reservation: loaded, no overdue mutation, due holds returned.
-- Returns an error answer, or nil and the context.
local function reserve_context(now)
  if not_loaded() then return err_answer('NOT_LOADED') end
  if pending_overdue(now) then return err_answer('RELOAD') end
  return nil, account_context(now)
end

local function new_decision(ctx, it, pol, ask_ledger)
  local granted, before = meter_totals(ctx.grants, it.meter, ctx.now)
  local action = pol.x
  if it.feature ~= '' and pol.xf and pol.xf[it.feature] then action = pol.xf[it.feature] end  -- FB4
  return {ctx = ctx, it = it, pol = pol, writes = it.mode ~= 'check', ask_ledger = ask_ledger,
          granted = granted, before = before, dedup_ms = it.dedup_ms, dedup_key = it.dedup_key,
          answer = {st = 'G', rs = '', ac = action, amt = it.amount, dd = false, ov = 0, oc = '',
                    al = {}, rows = {}, ep = ctx.epoch, hid = '', exp = 0}}
end

-- The answer, with `remaining` units left; kept under the idempotency key (pending until the
-- ledger has it, when it changed something).
local function finish(d, remaining)
  local it, answer, now = d.it, d.answer, d.ctx.now
  answer.rem = remaining
  answer.pct = pct(d.granted, remaining)
  -- the caller's action applies when it is refused or this answer ran the meter out
  if answer.st == 'G' and (remaining > 0 or answer.dd or not d.writes) then answer.ac = 0 end
  if d.writes and not answer.sq then
    -- a denial or dedup hit is kept in Redis only; if Redis lost state within the replay window,
    -- this may be the retry of a call the ledger recorded: the service asks Postgres (H4)
    -- the same after a rebuild dropped this key's unconfirmed record (load.lua)
    local lost = redis.call('HGET', KEYS[1], 'lost')
    if d.ask_ledger or (lost and tonumber(lost) + it.idem_ttl > now) then answer.chk = true end
  end
  local out = enc(answer)
  if d.writes and not (answer.st == 'D' and time_may_change_answer(d.ctx.grants, now)) then
    local state = 'c'
    if answer.sq then
      state = 'p'
      redis.call('ZADD', KEYS[5], it.pend_deadline, it.idem_key)
    end
    idem_store(it.idem_key, it.hash, out, state, it.idem_ttl)
  end
  return out
end

local function deny(d, reason)
  d.answer.st = 'D'
  d.answer.rs = reason
  d.answer.amt = 0
  -- the cycle has ended but not yet rolled over: the service rolls it and decides again
  local ce = tonumber(redis.call('HGET', KEYS[1], 'ce') or '0') or 0
  if ce > 0 and d.ctx.now >= ce then d.answer.cd = true end
  return finish(d, d.before)
end

-- Granted with nothing charged (a free feature, a dedup hit, a customer-service window).
local function free(d)
  d.answer.amt = 0
  return finish(d, d.before)
end

-- A policy with a feature list (from the plan) allows only those features, each with its charge
-- mode: included (grants, then overage), free (nothing charged: TA4), always_charged (straight to
-- the wallet: TA6). Without a list any feature is charged as usual. nil: not in the plan.
local function feature_charge(pol, feature)
  if feature ~= '' and pol.f then return pol.f[feature] end
  return 'included'
end

-- A price table's category of the request: the fixed one, the attribute's, or the group's (QC11:
-- every member sent to, at the group's category price). Returns it, or nil and an error answer.
-- pt: {v [[from_ms, {category: rule}, {country: {category: price}}]...], ca category attribute,
--      cf fixed category, co default country, cu currency, g [max members, priced as] or nil,
--      sw the meter whose dedup marks are customer-service windows}
local function price_category(pt, attrs, amount)
  local category = pt.cf
  if category == '' then
    category = attrs[pt.ca]
    if type(category) ~= 'string' or category == '' then return nil, err_answer('MISSING_ATTRIBUTE', {attr = pt.ca}) end
  end
  if attrs.group_members ~= nil then
    local n = tonumber(attrs.group_members)
    if not pt.g or n == nil or n < 1 or n > pt.g[1] or n ~= amount then
      return nil, err_answer('BAD_GROUP', {gmax = pt.g and pt.g[1] or 0})
    end
    category = pt.g[2]
  end
  return category
end

-- The category's price (minor units per unit) for the request's country in the version in force
-- now, and its rule. Returns price, rule or nil, error answer.
local function price_in_force(pt, attrs, category, now)
  local country = attrs.country
  if type(country) ~= 'string' or country == '' then country = pt.co end
  if country == '' then return nil, err_answer('MISSING_ATTRIBUTE', {attr = 'country'}) end
  local version = nil
  for _, v in ipairs(pt.v) do
    if v[1] <= now then version = v end
  end
  if not version then return nil, err_answer('NO_PRICE') end
  local prices = version[3][country]
  local price = prices and prices[category]
  if not price then return nil, err_answer('UNKNOWN_PRICE', {cat = country .. '/' .. category}) end
  return price, version[2][category] or 'per_message'
end

-- A meter priced by a table (QC3, QC5, QC10, QC11): the price of the request's category, for its
-- country, in the version in force now; the category's rule says how often it is charged. Sets
-- the policy's price and currency for this decision. Returns an error answer, or nil and whether
-- the request is free (inside the contact's customer-service window).
local function apply_price_table(d, attrs)
  local pt, now = d.pol.pt, d.ctx.now
  local category, cat_err = price_category(pt, attrs, d.it.amount)
  if not category then return cat_err end
  local price, rule = price_in_force(pt, attrs, category, now)
  if not price then return rule end
  local contact = attrs.contact_id
  if rule == 'per_message_outside_service_window' then
    if type(contact) == 'string' and contact ~= '' and pt.sw ~= '' then
      if mark_live(dedup_key_name(pt.sw, contact), now, d.ctx.epoch) then return nil, true end
    end
  elseif rule == 'per_conversation_24h' and not d.pol.u then
    if type(contact) ~= 'string' or contact == '' then return err_answer('MISSING_ATTRIBUTE', {attr = 'contact_id'}) end
    d.pt_business = contact .. '|' .. category  -- one charge per contact and category in 24 hours
  end
  d.pol.p = price
  d.pol.c = pt.cu
  return nil, false
end

-- A unique meter's window (ms from now): the billing cycle (calendar_month), the conversation's
-- life (taken as 30 days) or 24 hours from the first charge.
local function unique_window_ms(kind, now)
  if kind == 'calendar_month' then
    local ce = tonumber(redis.call('HGET', KEYS[1], 'ce') or '0') or 0
    return (ce > now and ce or now + 31 * 86400000) - now
  elseif kind == 'conversation' then
    return 30 * 86400000
  end
  return 86400000
end

-- The business key a unique meter (QC4, FB1, TA7) counts once per window: the request's attributes
-- the policy names. A request naming none of them is counted as it is (imports, corrections);
-- naming only some is an error. A duration meter (KB1) counts each started slice of a
-- conversation's bot time once; a slice's end belongs to it ("0-15, 16-30, 31-End"): 900 s is
-- slice 0, 901 s slice 1. Returns the key ('' for none), or nil and an error answer.
local function unique_business(pol, attrs)
  local values, missing = {}, nil
  for _, name in ipairs(pol.u.a) do
    local value = attrs[name]
    if type(value) == 'string' and value ~= '' then
      if pol.sl and name == 'bot_elapsed_s' then value = 's' .. math.max(math.ceil(tonumber(value) / pol.sl) - 1, 0) end
      values[#values + 1] = value
    else
      missing = missing or name
    end
  end
  if #values > 0 and missing then return nil, err_answer('MISSING_ATTRIBUTE', {attr = missing}) end
  return table.concat(values, '|')
end

-- The dedup mark the decision uses: the caller's (dedup_key, dedup_window), a unique meter's, or a
-- price table's per-conversation one. Returns an error answer or nil.
local function choose_mark(d, attrs)
  local pol, now = d.pol, d.ctx.now
  local business, window_ms = d.pt_business, 86400000
  if not business and d.dedup_ms == 0 and pol.u then
    local key, err = unique_business(pol, attrs)
    if not key then return err end
    if key ~= '' then
      business = key
      window_ms = unique_window_ms(pol.u.w, now)
    end
  end
  if business then
    d.dedup_ms = window_ms
    d.dedup_key = dedup_key_name(d.it.meter, business)
    d.answer.dk = business
  end
  return nil
end

-- The parts that pay for the item: its meter's grants (none for an always-charged feature), then
-- overage from the wallet at the policy's price. Returns the parts and the overage units, or nil
-- and the denial reason.
local function take(d, charge)
  local pol, grants, now, amount = d.pol, d.ctx.grants, d.ctx.now, d.it.amount
  local parts, short
  if charge == 'always_charged' then
    parts, short = {}, amount
  else
    parts, short = plan_take(ordered(grants, d.it.meter, now), amount)
  end
  if short <= 0 then return parts, 0 end
  if pol.p <= 0 then return nil, pol.dr or 'QUOTA_EXHAUSTED' end
  d.answer.oc = pol.c  -- a denial for want of money names the wallet (an auto top-up may refill it)
  local wparts, cost = pay_overage(grants, pol.c, short, pol.p, now)
  if not wparts then return nil, 'INSUFFICIENT_BALANCE' end
  for _, p in ipairs(wparts) do parts[#parts + 1] = p end
  d.answer.ou = short
  d.answer.pr = pol.p
  d.answer.ov = cost
  return parts, short
end

-- Write the decision: the grants' held (reserve) or used (consume) units, the sequence, the alerts
-- crossed, the dedup mark and the hold.
local function apply_take(d, parts, overage_units)
  local it, answer, grants, now = d.it, d.answer, d.ctx.grants, d.ctx.now
  local field = it.mode == 'reserve' and 'h' or 'u'
  for _, p in ipairs(parts) do
    local g = grants[p.g]
    g[field] = g[field] + p.a
    save_grant(g)
  end
  answer.rows = parts
  answer.sq = next_seq()
  local _, after = meter_totals(grants, it.meter, now)
  answer.al = crossed(d.pol, it.meter, pct(d.granted, d.before), pct(d.granted, after))
  local ddk = nil
  if d.dedup_ms > 0 then
    ddk = d.dedup_key
    redis.call('SET', ddk, mark_value(now + d.dedup_ms, d.ctx.epoch), 'PX', d.dedup_ms)
    answer.dde = now + d.dedup_ms
  end
  if it.mode == 'reserve' then
    redis.call('HSET', KEYS[3], it.hold_id, enc({m = it.meter, amt = it.amount, rows = parts, ou = overage_units,
                                                 pr = d.pol.p, exp = it.hold_exp, ddk = ddk, dde = answer.dde}))
    redis.call('ZADD', KEYS[4], it.hold_exp, it.hold_id)
    answer.hid = it.hold_id
    answer.exp = it.hold_exp
  end
  return finish(d, after)
end

-- Decide one reservation against the context; returns its JSON answer.
-- it: {mode 'reserve'|'consume'|'check', meter, amount, hash, hold_id, hold_exp, dedup_ms,
--      idem_key, dedup_key (key names), pend_deadline, idem_ttl, feature ('' for none),
--      attrs (JSON object of the request's attributes)}
local function reserve_item(ctx, it)
  local ask_ledger = false
  if it.mode ~= 'check' then
    local replay
    replay, ask_ledger = idem_lookup(it.idem_key, it.hash, ctx.now)
    if replay then return replay end
  end
  if redis.call('HEXISTS', KEYS[1], known_field(it.meter)) == 0 then return err_answer('UNKNOWN_METER') end
  local pol = policy(it.meter)
  if pol.cap then  -- a capacity meter (QC2): a seat is held while in use, never charged
    if it.mode == 'consume' then return err_answer('CAPACITY') end
    it.hold_exp = CAPACITY_HOLD_EXP
  end
  local d = new_decision(ctx, it, pol, ask_ledger)
  if ctx.status ~= 'active' then return deny(d, 'ACCOUNT_INACTIVE') end
  local charge = feature_charge(pol, it.feature)
  if not charge then return deny(d, 'FEATURE_NOT_IN_PLAN') end
  if charge == 'free' then return free(d) end
  local attrs = (pol.pt or pol.u) and dec(it.attrs or '{}') or nil
  if pol.pt then
    local err, in_window = apply_price_table(d, attrs)
    if err then return err end
    if in_window then return free(d) end
  end
  local err = choose_mark(d, attrs)
  if err then return err end
  if d.dedup_ms > 0 and mark_live(d.dedup_key, ctx.now, ctx.epoch) then
    d.answer.dd = true
    return free(d)
  end
  local parts, overage_or_reason = take(d, charge)
  if not parts then return deny(d, overage_or_reason) end
  if not d.writes then
    d.answer.rows = parts
    return finish(d, d.before)
  end
  return apply_take(d, parts, overage_or_reason)
end
