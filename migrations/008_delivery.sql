-- Senders, part two (package pipeline/delivery): the claim / lease / ack state of rendered
-- messages, the event outbox, engagement tracking per campaign and body retention.

-- campaigns.track: what a campaign tracks (campaign create --track opens,clicks); off by default.
ALTER TABLE campaigns ADD COLUMN track text[] NOT NULL DEFAULT '{}'
    CHECK (track <@ ARRAY['opens', 'clicks']::text[]);

-- Delivery state of a rendered message (status = 'rendered'), SQS-like:
--   ready       delivery IS NULL, not_before and retry_at reached, no live lease
--   leased      delivery IS NULL and lease_until > now(): the holder of receipt may ack it
--   final       delivery set: sent, bounced (hard|soft), complained, failed, suppressed (the
--               claim-time re-check left it out: delivery_reason says why) or exported
-- A claim sets a fresh receipt, attempts + 1, claimed_at and lease_until; an ack is taken only
-- with the current receipt. A retry ack clears the lease and claimed_at (so a cancel cancels it
-- like a message never claimed) and sets retry_at; an expired lease makes the message ready
-- again with no write at all. last_outcome is the status of the last ack under receipt, so a
-- repeated ack is recognised as one.
ALTER TABLE rendered_messages
    ADD COLUMN delivery        text CHECK (delivery IN ('sent', 'bounced', 'complained', 'failed', 'suppressed', 'exported')),
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN receipt         text,
    ADD COLUMN lease_until     timestamptz,
    ADD COLUMN retry_at        timestamptz,
    ADD COLUMN last_outcome    text CHECK (last_outcome IN ('sent', 'bounced', 'complained', 'failed', 'retry', 'exported')),
    ADD COLUMN bounce          text CHECK (bounce IN ('hard', 'soft')),
    ADD COLUMN provider_id     text CHECK (length(provider_id) <= 256),
    ADD COLUMN reply           text CHECK (length(reply) <= 2000),
    ADD COLUMN delivery_reason text CHECK (length(delivery_reason) <= 2000),
    ADD COLUMN acked_at        timestamptz,
    -- The content hash of the body (html, a NUL, text_body), set at render by the trigger
    -- below and kept when retention deletes the body (body_deleted_at).
    ADD COLUMN body_sha256     bytea CHECK (length(body_sha256) = 32),
    ADD COLUMN body_deleted_at timestamptz;

-- The claim scans each claimable campaign's undelivered messages by send time. Leased ones
-- stay in the index (delivery IS NULL) and are skipped by the lease condition; final ones
-- leave it.
CREATE INDEX rendered_messages_claim_idx ON rendered_messages (campaign_id, not_before)
    WHERE status = 'rendered' AND delivery IS NULL;
-- Retention finds acked messages whose body is still there by the final ack's time.
CREATE INDEX rendered_messages_retention_idx ON rendered_messages (acked_at)
    WHERE acked_at IS NOT NULL AND body_deleted_at IS NULL;

-- The content hash is taken where every rendered body passes, the insert, so the render jobs
-- (package jobs) need not know about it; an insert that brings its own hash keeps it.
CREATE FUNCTION rendered_messages_body_sha256() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.body_sha256 IS NULL AND NEW.status = 'rendered' THEN
        NEW.body_sha256 := sha256(convert_to(NEW.html, 'UTF8') || '\x00'::bytea || convert_to(NEW.text_body, 'UTF8'));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER rendered_messages_body_sha256 BEFORE INSERT ON rendered_messages
    FOR EACH ROW EXECUTE FUNCTION rendered_messages_body_sha256();

-- delivery_outbox: events waiting for the stream (email_sent, email_bounced, email_complained,
-- email_failed from acks; email_open, email_click from tracking). They are inserted in the
-- transaction of what caused them and deleted once Kinesis has them (delivery.Outbox), so an
-- ack never loses its event and never waits for Kinesis.
CREATE TABLE delivery_outbox (
    id            bigserial PRIMARY KEY,
    partition_key text NOT NULL CHECK (partition_key <> '' AND length(partition_key) <= 256),
    payload       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
