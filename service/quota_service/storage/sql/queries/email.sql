-- name: email_account_facts
-- what an account's emails are written with (delivery/email.py): its language, its time zone, and
-- its policy of the meter the mail is about (what happens at zero, per feature)
SELECT language, time_zone, policies -> $2::text AS policy FROM accounts WHERE account_id = $1
