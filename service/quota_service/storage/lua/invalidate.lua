-- Forget an account's state so that the next call rebuilds it from Postgres.
-- Used when a mutation's fate in Postgres is unknown (connection lost around COMMIT).
--
-- KEYS[1..5] account state (see _prelude.lua)
-- Returns 1.
for _, key in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
