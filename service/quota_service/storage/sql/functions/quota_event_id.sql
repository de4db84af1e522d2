-- quota_event_id, as it is now (first made by migrations/016_events.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- A stable public event id: 'evt_' + 26 characters (Crockford base32: 10 of the time in ms, so
-- ids sort by time, then 16 random).
CREATE OR REPLACE FUNCTION quota_event_id() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    rnd bytea := uuid_send(gen_random_uuid());
    out text := 'evt_';
    i integer;
BEGIN
    FOR i IN REVERSE 9..0 LOOP
        out := out || substr(alphabet, ((ms >> (5 * i)) & 31)::integer + 1, 1);
    END LOOP;
    FOR i IN 0..15 LOOP
        out := out || substr(alphabet, (get_byte(rnd, i) & 31) + 1, 1);
    END LOOP;
    RETURN out;
END $$;
