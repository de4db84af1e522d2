-- Shared helpers, prepended to every script in this folder when it is loaded.
--
-- Account state (all keys share the account's {hash tag}, so one script can touch them in a cluster):
--   KEYS[1] meta    hash: ep (epoch), sq (mutation sequence), st (status), pol:<meter> (policy JSON),
--                   k:<bucket> (known meter or wallet)
--   KEYS[2] grants  hash: grant id -> JSON {b bucket, p priority, s starts_ms, e expires_ms (0 never),
--                   o creation order, gr granted, u used, h held, od overdraft limit}
--   KEYS[3] holds   hash: hold id -> JSON {m meter, amt units, rows [{g, b, a}], ou overage units,
--                   pr price minor per unit, exp expires_ms, ddk dedup key name, dde its window end ms}
--   KEYS[4] hexp    zset: hold id scored by expires_ms
--   KEYS[5] pending zset: idempotency key of each mutation not yet confirmed durable, scored by the
--                   deadline (ms) after which the account must be rebuilt from Postgres
-- Amounts are integers (units, or minor units for wallets). cjson writes 14 significant digits, so
-- every amount and time kept here stays below 1e14 (the service's input limits see to it).

local function enc(v) return cjson.encode(v) end
local function dec(s) return cjson.decode(s) end

local function not_loaded()
  return redis.call('EXISTS', KEYS[1]) == 0
end

-- A mutation older than its deadline was never confirmed durable: Redis may hold what Postgres
-- does not, so the caller must rebuild the account before deciding anything.
local function pending_overdue(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1)
  return #due > 0
end

local function load_grants()
  local flat = redis.call('HGETALL', KEYS[2])
  local grants = {}
  for i = 1, #flat, 2 do
    local g = dec(flat[i + 1])
    g.id = flat[i]
    grants[g.id] = g
  end
  return grants
end

local function save_grant(g)
  local id = g.id
  g.id = nil
  redis.call('HSET', KEYS[2], id, enc(g))
  g.id = id
end

local function live(g, now)
  return g.s <= now and (g.e == 0 or g.e > now)
end

-- Live grants of one bucket in consumption order: priority, then earliest expiry, then oldest.
local function ordered(grants, bucket, now)
  local list = {}
  for _, g in pairs(grants) do
    if g.b == bucket and live(g, now) then list[#list + 1] = g end
  end
  table.sort(list, function(x, y)
    if x.p ~= y.p then return x.p < y.p end
    local xe = x.e == 0 and math.huge or x.e
    local ye = y.e == 0 and math.huge or y.e
    if xe ~= ye then return xe < ye end
    return x.o < y.o
  end)
  return list
end

-- Plan how to take `need` from a bucket: positive balances first in order, then overdraft room
-- in order. Returns the parts {g, a} and what could not be covered.
local function plan_take(list, need)
  local parts, by_grant = {}, {}
  for pass = 1, 2 do
    for _, g in ipairs(list) do
      if need <= 0 then break end
      local left = g.gr - g.u - g.h - (by_grant[g.id] or 0)
      local room
      if pass == 1 then room = math.max(left, 0) else room = left + g.od end
      local take = math.min(room, need)
      if take > 0 then
        by_grant[g.id] = (by_grant[g.id] or 0) + take
        parts[#parts + 1] = {g = g.id, b = g.b, a = take}
        need = need - take
      end
    end
  end
  return parts, need
end

-- Granted and remaining units of a meter across its live grants.
local function meter_totals(grants, meter, now)
  local granted, remaining = 0, 0
  for _, g in pairs(grants) do
    if g.b == meter and live(g, now) then
      granted = granted + g.gr
      remaining = remaining + (g.gr - g.u - g.h)
    end
  end
  return granted, remaining
end

local function pct(granted, remaining)
  if granted <= 0 then return 0 end
  local p = 100 * remaining / granted
  if p < 0 then return 0 end
  if p > 100 then return 100 end
  return p
end

-- A capacity meter's hold (a seat in use, QC2) lasts until it is released: 2999-12-31 (MAX_TIME_MS).
local CAPACITY_HOLD_EXP = 32503679999000

local function policy(meter)
  local raw = redis.call('HGET', KEYS[1], 'pol:' .. meter)
  if raw then return dec(raw) end
  return {p = 0, c = '', x = 0, al = {}}
end

-- Thresholds (percent left) crossed going from `before` to `after`.
local function crossed(pol, meter, before, after)
  local out = {}
  for _, t in ipairs(pol.al or {}) do
    if before > t and after <= t then out[#out + 1] = {m = meter, t = t} end
  end
  return out
end

-- Free the dedup key a hold charged, unless a later charge has taken the key over since.
local function drop_dedup_mark(hold)
  if not hold.ddk then return end
  local mark = redis.call('GET', hold.ddk)
  if mark and string.sub(mark, 1, string.find(mark, '|', 1, true) - 1) == tostring(hold.dde) then
    redis.call('DEL', hold.ddk)
  end
end

-- Return holds whose time is up to their grants. Postgres's sweeper writes the matching ledger
-- entries; both sides apply the same rule at the same instant, so they agree without a round trip.
local function expire_due(now, grants)
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
  if #due == 0 then return grants end
  grants = grants or load_grants()
  for _, hid in ipairs(due) do
    local raw = redis.call('HGET', KEYS[3], hid)
    if raw then
      local hold = dec(raw)
      for _, r in ipairs(hold.rows) do
        local g = grants[r.g]
        if g then
          g.h = g.h - r.a
          save_grant(g)
        end
      end
      drop_dedup_mark(hold)
      redis.call('HDEL', KEYS[3], hid)
    end
    redis.call('ZREM', KEYS[4], hid)
  end
  return grants
end

-- An idempotency record: {h request hash, st 'p' pending | 'c' confirmed | 'l' ledger, r answer JSON}.
-- 'l' (left by load.lua in place of a pending record): the answer is whatever the ledger holds for
-- the key; returns nil, true so that a fresh decision that changes nothing asks the ledger (N11).
local function idem_lookup(key, hash, now)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local rec = dec(raw)
  -- a request fingerprint is "<hash>.<digest of each parameter>": the hash alone says whether two
  -- requests are the same; the first one's fingerprint goes back to name what differs
  if string.match(rec.h, '^[^.]*') ~= string.match(hash, '^[^.]*') then return enc({e = 'IDEM_MISMATCH', h = rec.h}) end
  if rec.st == 'l' then return nil, true end
  if rec.st == 'p' then
    -- unconfirmed past its deadline (its caller never heard back, or the process died): the account
    -- must be rebuilt from Postgres, which then answers this key
    local deadline = redis.call('ZSCORE', KEYS[5], key)
    if deadline and tonumber(deadline) <= now then return enc({e = 'RELOAD'}) end
    return enc({e = 'IN_PROGRESS'})
  end
  return enc({rp = rec.r})
end

local function idem_store(key, hash, answer, state, ttl_ms)
  redis.call('SET', key, enc({h = hash, st = state, r = answer}), 'PX', ttl_ms)
end

local function next_seq()
  return redis.call('HINCRBY', KEYS[1], 'sq', 1)
end

-- The account-wide part of a reservation: loaded, no overdue mutation, due holds returned.
-- Returns an error answer, or nil and the context {now, epoch, grants, status}.
local function reserve_context(now)
  if not_loaded() then return enc({e = 'NOT_LOADED'}) end
  if pending_overdue(now) then return enc({e = 'RELOAD'}) end
  local grants = expire_due(now, nil) or load_grants()
  return nil, {now = now, epoch = tonumber(redis.call('HGET', KEYS[1], 'ep')), grants = grants,
               status = redis.call('HGET', KEYS[1], 'st')}
end

-- Replicas agree on time only to within their clock measurement (N9; a replica whose measurement
-- is less precise than 2 s refuses to serve, domain/clock.py, so two are never 5 s apart). A denial made while
-- a grant is about to start or a hold about to end may come from a replica whose clock lags the
-- one that made that change: such a denial is answered but not kept for replay, so it cannot
-- outlive its cause under the idempotency key.
local CLOCK_SLACK_MS = 5000

local function time_may_change_answer(grants, now)
  for _, g in pairs(grants) do
    if g.s > now and g.s <= now + CLOCK_SLACK_MS then return true end
  end
  return #redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, now + CLOCK_SLACK_MS, 'LIMIT', 0, 1) > 0
end

-- Decide one reservation (H1, H3, H6) against the context; returns its JSON answer.
-- it: {mode 'reserve'|'consume'|'check', meter, amount, hash, hold_id, hold_exp, dedup_ms,
--      idem_key, dedup_key (key names), pend_deadline, idem_ttl, feature ('' for none),
--      attrs (JSON object of the request's attributes)}
local function reserve_item(ctx, it)
  local now, epoch, grants = ctx.now, ctx.epoch, ctx.grants
  local meter, amount = it.meter, it.amount
  local writes = it.mode ~= 'check'
  local ask_ledger = false
  if writes then
    local replay
    replay, ask_ledger = idem_lookup(it.idem_key, it.hash, now)
    if replay then return replay end
  end
  if redis.call('HEXISTS', KEYS[1], 'k:' .. meter) == 0 then return enc({e = 'UNKNOWN_METER'}) end

  local pol = policy(meter)
  if pol.cap then  -- a capacity meter (QC2): a seat is held while in use, never charged
    if it.mode == 'consume' then return enc({e = 'CAPACITY'}) end
    it.hold_exp = CAPACITY_HOLD_EXP
  end
  local granted, before = meter_totals(grants, meter, now)
  local action = pol.x
  if it.feature ~= '' and pol.xf and pol.xf[it.feature] then action = pol.xf[it.feature] end  -- FB4
  local answer = {st = 'G', rs = '', ac = action, amt = amount, dd = false, ov = 0, oc = '',
                  al = {}, rows = {}, ep = epoch, hid = '', exp = 0}

  local function finish(remaining)
    answer.rem = remaining
    answer.pct = pct(granted, remaining)
    -- the caller's action applies when it is refused or this answer ran the meter out
    if answer.st == 'G' and (remaining > 0 or answer.dd or not writes) then answer.ac = 0 end
    if writes and not answer.sq then
      -- a denial or dedup hit is kept in Redis only; if Redis lost state within the replay window,
      -- this may be the retry of a call the ledger recorded: the service asks Postgres (H4)
      -- the same after a rebuild dropped this key's unconfirmed record (load.lua)
      local lost = redis.call('HGET', KEYS[1], 'lost')
      if ask_ledger or (lost and tonumber(lost) + it.idem_ttl > now) then answer.chk = true end
    end
    local out = enc(answer)
    if writes and not (answer.st == 'D' and time_may_change_answer(grants, now)) then
      local state = 'c'
      if answer.sq then
        state = 'p'
        redis.call('ZADD', KEYS[5], it.pend_deadline, it.idem_key)
      end
      idem_store(it.idem_key, it.hash, out, state, it.idem_ttl)
    end
    return out
  end

  local function deny(reason)
    answer.st = 'D'
    answer.rs = reason
    answer.amt = 0
    -- the cycle has ended but not yet rolled over: the service rolls it and decides again
    local ce = tonumber(redis.call('HGET', KEYS[1], 'ce') or '0') or 0
    if ce > 0 and now >= ce then answer.cd = true end
    return finish(before)
  end

  if ctx.status ~= 'active' then return deny('ACCOUNT_INACTIVE') end

  -- A policy with a feature list (from the plan) allows only those features, each with its charge
  -- mode: included (grants, then overage), free (nothing charged: TA4), always_charged (straight to
  -- the wallet: TA6). Without a list any feature is charged as usual.
  local charge = 'included'
  if it.feature ~= '' and pol.f then
    charge = pol.f[it.feature]
    if not charge then return deny('FEATURE_NOT_IN_PLAN') end
  end
  if charge == 'free' then
    answer.amt = 0
    return finish(before)
  end

  -- A meter priced by a table (QC3, QC5, QC10, QC11): the price of the request's category, for its
  -- country, in the version in force now; the category's rule says how often it is charged.
  -- pt: {v [[from_ms, {category: rule}, {country: {category: price}}]...], ca category attribute,
  --      cf fixed category, co default country, cu currency, g [max members, priced as] or nil,
  --      sw the meter whose dedup marks are customer-service windows}
  local pt_business = nil
  if pol.pt then
    local pt = pol.pt
    local attrs = dec(it.attrs or '{}')
    local category = pt.cf
    if category == '' then
      category = attrs[pt.ca]
      if type(category) ~= 'string' or category == '' then return enc({e = 'MISSING_ATTRIBUTE', a = pt.ca}) end
    end
    if attrs.group_members ~= nil then  -- QC11: every member sent to, at the group's category price
      local n = tonumber(attrs.group_members)
      if not pt.g or n == nil or n < 1 or n > pt.g[1] or n ~= amount then
        return enc({e = 'BAD_GROUP', m = pt.g and pt.g[1] or 0})
      end
      category = pt.g[2]
    end
    local country = attrs.country
    if type(country) ~= 'string' or country == '' then country = pt.co end
    if country == '' then return enc({e = 'MISSING_ATTRIBUTE', a = 'country'}) end
    local version = nil
    for _, v in ipairs(pt.v) do
      if v[1] <= now then version = v end
    end
    if not version then return enc({e = 'NO_PRICE'}) end
    local prices = version[3][country]
    local price = prices and prices[category]
    if not price then return enc({e = 'UNKNOWN_PRICE', a = country .. '/' .. category}) end
    local rule = version[2][category] or 'per_message'
    local contact = attrs.contact_id
    if rule == 'per_message_outside_service_window' then
      if type(contact) == 'string' and contact ~= '' and pt.sw ~= '' then
        local mark = redis.call('GET', string.sub(KEYS[1], 1, -2) .. 'd:' .. pt.sw .. ':' .. contact)
        if mark then
          local sep = string.find(mark, '|', 1, true)
          if tonumber(string.sub(mark, 1, sep - 1)) > now and tonumber(string.sub(mark, sep + 1)) == epoch then
            answer.amt = 0  -- inside the contact's customer-service window: free
            return finish(before)
          end
        end
      end
    elseif rule == 'per_conversation_24h' and not pol.u then
      if type(contact) ~= 'string' or contact == '' then return enc({e = 'MISSING_ATTRIBUTE', a = 'contact_id'}) end
      pt_business = contact .. '|' .. category
    end
    pol.p = price
    pol.c = pt.cu
  end

  -- A unique meter of the plan (QC4, FB1, TA7) counts each key once per window: the key is made of
  -- the request's attributes the policy names; the window is the billing cycle (calendar_month),
  -- the conversation's life (taken as 30 days) or 24 hours from the first charge. A request naming
  -- none of those attributes is counted as it is (imports, corrections); naming only some is an error.
  local dedup_ms, dedup_key = it.dedup_ms, it.dedup_key
  local values, missing = {}, nil
  if dedup_ms == 0 and pol.u then
    local attrs = dec(it.attrs or '{}')
    for _, name in ipairs(pol.u.a) do
      local value = attrs[name]
      if type(value) == 'string' and value ~= '' then
        -- a duration meter (KB1) counts each started slice of a conversation's bot time once; a
        -- slice's end belongs to it ("0-15, 16-30, 31-End"): 900 s is slice 0, 901 s slice 1
        if pol.sl and name == 'bot_elapsed_s' then value = 's' .. math.max(math.ceil(tonumber(value) / pol.sl) - 1, 0) end
        values[#values + 1] = value
      else
        missing = missing or name
      end
    end
    if #values > 0 and missing then return enc({e = 'MISSING_ATTRIBUTE', a = missing}) end
  end
  if pt_business then  -- one charge per contact and category in 24 hours
    dedup_ms = 86400000
    dedup_key = string.sub(KEYS[1], 1, -2) .. 'd:' .. meter .. ':' .. pt_business
    answer.dk = pt_business
  elseif #values > 0 then
    local business = table.concat(values, '|')
    local window_end = now + 86400000
    if pol.u.w == 'calendar_month' then
      local ce = tonumber(redis.call('HGET', KEYS[1], 'ce') or '0') or 0
      window_end = ce > now and ce or now + 31 * 86400000
    elseif pol.u.w == 'conversation' then
      window_end = now + 30 * 86400000
    end
    dedup_ms = window_end - now
    dedup_key = string.sub(KEYS[1], 1, -2) .. 'd:' .. meter .. ':' .. business
    answer.dk = business
  end

  if dedup_ms > 0 then
    local mark = redis.call('GET', dedup_key)
    if mark then
      local sep = string.find(mark, '|', 1, true)
      local window_end = tonumber(string.sub(mark, 1, sep - 1))
      local mark_epoch = tonumber(string.sub(mark, sep + 1))
      -- A mark written under an older epoch was not reloaded from Postgres: it does not count.
      if window_end > now and mark_epoch == epoch then
        answer.dd = true
        answer.amt = 0
        return finish(before)
      end
    end
  end

  local parts, short
  if charge == 'always_charged' then
    parts, short = {}, amount
  else
    parts, short = plan_take(ordered(grants, meter, now), amount)
  end
  local overage_units = 0
  if short > 0 then
    if pol.p <= 0 then return deny(pol.dr or 'QUOTA_EXHAUSTED') end
    local cost = short * pol.p
    answer.oc = pol.c  -- a denial for want of money names the wallet (an auto top-up may refill it)
    if cost >= 1e13 then return deny('INSUFFICIENT_BALANCE') end
    local wparts, wshort = plan_take(ordered(grants, '$' .. pol.c, now), cost)
    if wshort > 0 then return deny('INSUFFICIENT_BALANCE') end
    for _, p in ipairs(wparts) do parts[#parts + 1] = p end
    overage_units = short
    answer.ou = short
    answer.pr = pol.p
    answer.ov = cost
    answer.oc = pol.c
  end

  if not writes then
    answer.rows = parts
    return finish(before)
  end

  local field = it.mode == 'reserve' and 'h' or 'u'
  for _, p in ipairs(parts) do
    local g = grants[p.g]
    g[field] = g[field] + p.a
    save_grant(g)
  end
  answer.rows = parts
  answer.sq = next_seq()
  local _, after = meter_totals(grants, meter, now)
  answer.al = crossed(pol, meter, pct(granted, before), pct(granted, after))

  local ddk = nil
  if dedup_ms > 0 then
    ddk = dedup_key
    redis.call('SET', ddk, (now + dedup_ms) .. '|' .. epoch, 'PX', dedup_ms)
    answer.dde = now + dedup_ms
  end
  if it.mode == 'reserve' then
    redis.call('HSET', KEYS[3], it.hold_id, enc({m = meter, amt = amount, rows = parts, ou = overage_units,
                                                 pr = pol.p, exp = it.hold_exp, ddk = ddk, dde = answer.dde}))
    redis.call('ZADD', KEYS[4], it.hold_exp, it.hold_id)
    answer.hid = it.hold_id
    answer.exp = it.hold_exp
  end
  return finish(after)
end
