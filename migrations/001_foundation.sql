-- Foundation schema: the CRM system of record, campaigns, rendered messages and dead letters.

-- customers is the CRM system of record. CDC (tailor cdc) copies its rows into the DynamoDB
-- profiles. Ids are the CRM's own, hence text.
CREATE TABLE customers (
    id          text PRIMARY KEY CHECK (id <> '' AND length(id) <= 128),
    email       text NOT NULL CHECK (position('@' in email) > 1 AND length(email) <= 320),
    first_name  text,
    last_name   text,
    locale      text,
    timezone    text,
    country     text,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- campaigns holds what a marketer scheduled. The template's files are copied in at creation so a
-- running campaign never sees a half-edited template folder.
CREATE TABLE campaigns (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    template_name    text NOT NULL,
    template_version integer NOT NULL,
    template_files   jsonb NOT NULL,
    segment          text NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'running', 'rendered', 'failed', 'cancelled')),
    audience_count   integer NOT NULL DEFAULT 0,
    fanout_done      boolean NOT NULL DEFAULT false,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

-- rendered_messages: one row per (campaign, customer); the unique key makes render jobs
-- idempotent when River runs one twice.
CREATE TABLE rendered_messages (
    id           bigserial PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    customer_id  text NOT NULL,
    email        text NOT NULL,
    status       text NOT NULL DEFAULT 'rendered' CHECK (status IN ('rendered', 'skipped', 'failed')),
    subject      text NOT NULL DEFAULT '',
    preheader    text NOT NULL DEFAULT '',
    html         text NOT NULL DEFAULT '',
    text_body    text NOT NULL DEFAULT '',
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    provenance   jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, customer_id)
);

-- dead_letters keeps every input Tailor refused, raw, with the reason: nothing is dropped silently.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,          -- events.api, events.stream, cdc, webhook, job ...
    reason      text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
CREATE INDEX dead_letters_source_created_idx ON dead_letters (source, created_at DESC);
