-- Engagement per rendered message: the opens and clicks tracking records (campaigns created
-- with --track), so campaign status and report can say how many recipients opened or clicked
-- (unique) and how often (total), next to the delivery counts. One narrow row per message
-- that was opened or clicked at least once, upserted by each hit in the transaction that puts
-- its event in the outbox; it goes with its message (a deleted campaign, an erased customer).
CREATE TABLE message_engagement (
    message_id     bigint PRIMARY KEY REFERENCES rendered_messages (id) ON DELETE CASCADE,
    campaign_id    bigint NOT NULL,
    opens          integer NOT NULL DEFAULT 0 CHECK (opens >= 0),
    clicks         integer NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    first_open_at  timestamptz,
    first_click_at timestamptz,
    last_at        timestamptz NOT NULL
);
CREATE INDEX message_engagement_campaign_idx ON message_engagement (campaign_id);
