-- Preferences shared by campaigns, the preference center and senders: the topics catalogue and
-- the suppression list. Subscriptions and consents are in 002_cdc.sql.

-- topics: what a recipient can subscribe to. default_status is what a customer without a
-- subscriptions row for the topic has: 'subscribed' for opt-out topics, 'unsubscribed' for
-- opt-in ones. An archived topic is no longer listed on the preference page and no new
-- campaign may name it.
CREATE TABLE topics (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    default_status text NOT NULL DEFAULT 'unsubscribed' CHECK (default_status IN ('subscribed', 'unsubscribed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    archived_at    timestamptz
);

-- suppressions: addresses no campaign may send to, whatever the topic: a global unsubscribe,
-- a hard bounce, a complaint, or an operator's entry. Keyed by the lower-cased address
-- (bounces and complaints are about addresses); customer_id is kept when known.
CREATE TABLE suppressions (
    email       text PRIMARY KEY CHECK (email = lower(email) AND position('@' in email) > 1 AND length(email) <= 320),
    customer_id text,
    reason      text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    source      text NOT NULL CHECK (source <> '' AND length(source) <= 64),
    detail      text CHECK (length(detail) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppressions_customer_idx ON suppressions (customer_id) WHERE customer_id IS NOT NULL;
