-- Webhook endpoints (issue 12): where the events of an account, or of every account of an
-- organization, are POSTed, signed per the Standard Webhooks specification. Created, listed,
-- enabled, disabled, rotated and deleted by admin RPCs (app/webhooks.py); the dispatcher reads
-- them and disables an endpoint that answers 410 Gone or fails for its whole retry window.
CREATE TABLE webhook_endpoints (
    endpoint_id            text PRIMARY KEY,                 -- 'we_' + random
    org_id                 text,                             -- an organization's endpoint, or
    account_id             text REFERENCES accounts (account_id) ON DELETE CASCADE,  -- an account's
    url                    text NOT NULL,                    -- https:// (checked against SSRF at creation)
    event_types            text[] NOT NULL DEFAULT '{}',     -- empty = every type
    description            text NOT NULL DEFAULT '',
    enabled                boolean NOT NULL DEFAULT true,
    disabled_reason        text,                             -- why it is disabled: manual, or the dispatcher's reason
    -- 'whsec_' + base64 of 24 random bytes. It has to be readable (it keys an HMAC), so it is
    -- kept here and nowhere else: the API shows it once, in the answer that made it.
    secret                 text NOT NULL,
    previous_secret        text,                             -- after a rotation: signs too, until
    previous_secret_until  timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    CHECK ((org_id IS NULL) <> (account_id IS NULL)),
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id) WHERE org_id IS NOT NULL;

-- Billing contacts of an account (SetBillingContacts): the recipients of its email notices, in
-- its language.
ALTER TABLE accounts
    ADD COLUMN billing_emails text[] NOT NULL DEFAULT '{}',
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'id'));
