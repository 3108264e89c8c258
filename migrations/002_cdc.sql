-- Change data capture: the preference tables CDC copies into profiles, and CDC's bookkeeping.

-- subscriptions: one row per (customer, topic). CDC lands it on the profile as
-- subscriptions.<topic> = {status, source, updated_at, lsn}.
CREATE TABLE subscriptions (
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    topic       text NOT NULL CHECK (topic <> '' AND length(topic) <= 128),
    status      text NOT NULL CHECK (status IN ('subscribed', 'unsubscribed', 'pending')),
    source      text NOT NULL DEFAULT 'crm',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, topic)
);

-- consents: one row per (customer, purpose). CDC lands it on the profile as
-- consents.<purpose> = {granted, source, at, lsn}.
CREATE TABLE consents (
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose <> '' AND length(purpose) <= 128),
    granted     boolean NOT NULL,
    source      text NOT NULL DEFAULT 'crm',
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, purpose)
);

-- cdc_slots records, per replication slot, that the initial backfill from the slot's exported
-- snapshot finished. A slot without a row here was created by a process that died before its
-- backfill was complete: the next process drops and re-creates it, so no row is ever skipped.
CREATE TABLE cdc_slots (
    slot_name       text PRIMARY KEY,
    consistent_lsn  pg_lsn NOT NULL,
    backfilled_rows bigint NOT NULL,
    backfilled_at   timestamptz NOT NULL DEFAULT now()
);
