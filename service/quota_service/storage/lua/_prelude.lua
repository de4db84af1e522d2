-- Shared helpers, prepended to every script in this folder when it is loaded (then _reserve.lua).
-- Every key and JSON field named here is listed, with its meaning and unit, in README.md.
--
-- Account state (all keys share the account's {hash tag}, so one script can touch them in a cluster):
--   KEYS[1] meta    hash: ep (epoch), sq (mutation sequence), st (account status), ce (cycle end ms),
--                   lost (ms the state was found missing), pol:<meter> (policy JSON), k:<bucket> (known)
--   KEYS[2] grants  hash: grant id -> JSON {b bucket, p priority, s starts_ms, e expires_ms (0 never),
--                   o creation order, gr granted, u used, h held, od overdraft limit, src, lb}
--   KEYS[3] holds   hash: hold id -> JSON {m meter, amt units, rows [{g, b, a}], ou overage units,
--                   pr price minor per unit, exp expires_ms, ddk dedup key name, dde its window end ms}
--   KEYS[4] hexp    zset: hold id scored by expires_ms
--   KEYS[5] pending zset: idempotency key of each mutation not yet confirmed durable, scored by the
--                   deadline (ms) after which the account must be rebuilt from Postgres
-- Amounts are integers (units, or minor units for wallets). cjson writes 14 significant digits, so
-- every amount and time kept here stays below 1e14 (the service's input limits see to it).

local function enc(v) return cjson.encode(v) end
local function dec(s) return cjson.decode(s) end

-- Key names. The service passes every key a script is called with (storage/keys.py); the only
-- names a script makes itself are built here, in the same form as Keys.dedup, and nowhere else.

-- "<prefix>:{<account>}:", from the meta key "<prefix>:{<account>}:m"
local function account_prefix() return string.sub(KEYS[1], 1, -2) end
-- a dedup mark: the business key `business` of `meter` charged once per window
local function dedup_key_name(meter, business) return account_prefix() .. 'd:' .. meter .. ':' .. business end
-- the meta hash's fields: a meter's policy, a bucket the account knows
local function policy_field(meter) return 'pol:' .. meter end
local function known_field(bucket) return 'k:' .. bucket end
-- the bucket a meta field names (a policy's meter or a known bucket), or nil
local function bucket_of_field(field)
  if string.sub(field, 1, 2) == 'k:' then return string.sub(field, 3) end
  if string.sub(field, 1, 4) == 'pol:' then return string.sub(field, 5) end
  return nil
end
local function wallet_bucket(currency) return '$' .. currency end

-- A dedup mark's value: "<window_end_ms>|<epoch>". A mark written under an older epoch was not
-- reloaded from Postgres and does not count.
local function mark_value(window_end, epoch) return window_end .. '|' .. epoch end
-- The mark's window end and epoch (numbers), or nil when there is no mark.
local function read_mark(key)
  local mark = redis.call('GET', key)
  if not mark then return nil end
  local sep = string.find(mark, '|', 1, true)
  return tonumber(string.sub(mark, 1, sep - 1)), tonumber(string.sub(mark, sep + 1))
end
-- Whether a mark is in force now under this epoch.
local function mark_live(key, now, epoch)
  local window_end, mark_epoch = read_mark(key)
  return window_end ~= nil and window_end > now and mark_epoch == epoch
end

-- An error answer: {err = code} plus the fields that say more (see README.md).
local function err_answer(code, detail)
  local out = detail or {}
  out.err = code
  return enc(out)
end

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
-- in order. Returns the parts {g, b, a} and what could not be covered.
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

-- Overage, shared by a reservation and a commit above its hold: `short` units at `price` minor
-- units each, paid from the wallet of `currency` in consumption order. Returns the wallet parts and
-- the cost, or nil and the cost when the cost is out of range (1e13, see above) or the wallet
-- cannot cover it. The caller decides what a price of 0 means.
local function pay_overage(grants, currency, short, price, now)
  local cost = short * price
  if cost >= 1e13 then return nil, cost end
  local wparts, wshort = plan_take(ordered(grants, wallet_bucket(currency), now), cost)
  if wshort > 0 then return nil, cost end
  return wparts, cost
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
  local raw = redis.call('HGET', KEYS[1], policy_field(meter))
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

-- Thresholds (percent left) the meter is lifted back above going from `before` to `after` (a hold
-- released or committed for less): the alerts they fired may be resolved.
local function lifted(pol, meter, before, after)
  local out = {}
  for _, t in ipairs(pol.al or {}) do
    if before <= t and after > t then out[#out + 1] = {m = meter, t = t} end
  end
  return out
end

-- Free the dedup key a hold charged, unless a later charge has taken the key over since.
local function drop_dedup_mark(hold)
  if not hold.ddk then return end
  local window_end = read_mark(hold.ddk)
  if window_end ~= nil and window_end == hold.dde then
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

-- An idempotency record: {fp request fingerprint, state 'p' pending | 'c' confirmed | 'l' ledger,
-- r answer JSON}. Records written before these names ({h, st, r}) read the same.
local function idem_record(raw)
  local rec = dec(raw)
  return {fp = rec.fp or rec.h, state = rec.state or rec.st, r = rec.r}
end

-- 'l' (left by load.lua in place of a pending record): the answer is whatever the ledger holds for
-- the key; returns nil, true so that a fresh decision that changes nothing asks the ledger (N11).
local function idem_lookup(key, fingerprint, now)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local rec = idem_record(raw)
  -- a request fingerprint is "<hash>.<digest of each parameter>": the hash alone says whether two
  -- requests are the same; the first one's fingerprint goes back to name what differs
  if string.match(rec.fp, '^[^.]*') ~= string.match(fingerprint, '^[^.]*') then
    return err_answer('IDEM_MISMATCH', {fp = rec.fp})
  end
  if rec.state == 'l' then return nil, true end
  if rec.state == 'p' then
    -- unconfirmed past its deadline (its caller never heard back, or the process died): the account
    -- must be rebuilt from Postgres, which then answers this key
    local deadline = redis.call('ZSCORE', KEYS[5], key)
    if deadline and tonumber(deadline) <= now then return err_answer('RELOAD') end
    return err_answer('IN_PROGRESS')
  end
  return enc({rp = rec.r})
end

local function idem_store(key, fingerprint, answer, state, ttl_ms)
  redis.call('SET', key, enc({fp = fingerprint, state = state, r = answer}), 'PX', ttl_ms)
end

local function next_seq()
  return redis.call('HINCRBY', KEYS[1], 'sq', 1)
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
