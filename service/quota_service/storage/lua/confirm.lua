-- Mark mutations durable once Postgres has committed them.
--
-- KEYS[1] pending zset of the account; KEYS[2..n] idempotency records of its committed mutations
-- ARGV[1] epoch the mutations were made under: a record from an older epoch is left alone
-- Returns the number of records confirmed.
local n = 0
local epoch = tonumber(ARGV[1])
for i = 2, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if not raw then
    redis.call('ZREM', KEYS[1], KEYS[i])
  else
    local rec = idem_record(raw)
    -- the key may since have been decided again under a newer epoch: that mutation stays pending
    if rec.state == 'p' and dec(rec.r).ep == epoch then
      rec.state = 'c'
      redis.call('SET', KEYS[i], enc(rec), 'KEEPTTL')
      redis.call('ZREM', KEYS[1], KEYS[i])
      n = n + 1
    end
  end
end
return n
