-- The preference center (package preferences): the audit log of every preference change, the
-- webhook deliveries kept for idempotency, and what an erasure keeps of a suppressed address.
-- topics and suppressions are in 004_preferences.sql, subscriptions and consents in 002_cdc.sql.

-- Webhooks and the preference page find customers by address, case-insensitively.
CREATE INDEX customers_email_lower_idx ON customers (lower(email));

-- preference_audit: one row per change set that reached the preference tables (a webhook, a
-- save on the preference page, a one-click unsubscribe, an operator's command) and one per
-- erasure. Append-only: a trigger refuses UPDATE always, and DELETE except inside an erasure
-- (tailor customer forget sets tailor.erasure = 'on' for its transaction), which removes the
-- customer's rows and leaves one row of its own without personal data (customer_id NULL).
CREATE TABLE preference_audit (
    id          bigserial PRIMARY KEY,
    customer_id text CHECK (length(customer_id) <= 128),
    source      text NOT NULL CHECK (source <> '' AND length(source) <= 64), -- webhook, preference_page, one_click, erasure, ...
    request_id  text CHECK (length(request_id) <= 256),                      -- the webhook-id, or the message's campaign
    occurred_at timestamptz NOT NULL,                                        -- when the change happened, as its source says
    changes     jsonb NOT NULL,                                              -- what was asked
    outcome     jsonb NOT NULL,                                              -- what took effect, and what was older than the stored value
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX preference_audit_customer_idx ON preference_audit (customer_id, id) WHERE customer_id IS NOT NULL;

CREATE FUNCTION preference_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('tailor.erasure', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'preference_audit is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER preference_audit_append_only BEFORE UPDATE OR DELETE ON preference_audit
    FOR EACH ROW EXECUTE FUNCTION preference_audit_append_only();

-- webhook_deliveries: the accepted webhooks of the last 24 hours, by their webhook-id (the
-- idempotency key). A delivery with the same id and body gets the stored answer again; the same
-- id with another body is refused. Only the body's hash is kept, never the body. Rows older than
-- 24 hours count as absent and are purged.
CREATE TABLE webhook_deliveries (
    webhook_id  text PRIMARY KEY CHECK (webhook_id <> '' AND length(webhook_id) <= 256),
    body_sha256 bytea NOT NULL,
    customer_id text,
    answer      text NOT NULL,                  -- the JSON answer, byte for byte
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_customer_idx ON webhook_deliveries (customer_id) WHERE customer_id IS NOT NULL;

-- erased_suppressions: what an erasure keeps of a suppressed address, so that a hard bounce,
-- a complaint or a global unsubscribe keeps working after the customer is forgotten: the
-- SHA-256 of the lower-cased address and the reason, nothing else. preferences.Check matches
-- recipients' addresses against it.
CREATE TABLE erased_suppressions (
    email_sha256 bytea PRIMARY KEY CHECK (length(email_sha256) = 32),
    reason       text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- dead_letter_mentions says whether a dead letter's payload or reason mentions one of the
-- (lower-cased) addresses, in any ASCII case, or one of the customer ids as a JSON string (so
-- id "c1" does not match "c10"). encode(..., 'escape') reads any bytes as text, so payloads
-- that are not UTF-8 are searched too. Erasure and export use it.
CREATE FUNCTION dead_letter_mentions(payload bytea, reason text, ids text[], emails text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT EXISTS (SELECT 1 FROM unnest(emails) AS e(email)
                   WHERE position(lower(encode(convert_to(e.email, 'UTF8'), 'escape')) IN lower(encode(payload, 'escape'))) > 0
                      OR position(e.email IN lower(reason)) > 0)
        OR EXISTS (SELECT 1 FROM unnest(ids) AS i(id)
                   WHERE position(encode(convert_to('"' || i.id || '"', 'UTF8'), 'escape') IN encode(payload, 'escape')) > 0
                      OR position('"' || i.id || '"' IN reason) > 0)
$$;
