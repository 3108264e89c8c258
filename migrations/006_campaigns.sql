-- The campaign lifecycle (package jobs): states and their times, when and to whom a campaign
-- sends, triggered campaigns, the fan-out's persisted scan cursors and the counters that decide
-- completion. Rendered messages get their send time, an occurrence (a triggered campaign sends
-- once per window) and lz4 compression for their big bodies.

-- States: draft -> scheduled -> running -> rendered, with paused, cancelled and failed; the
-- allowed transitions are jobs.Transitions. A triggered campaign stays running while it listens.
ALTER TABLE campaigns DROP CONSTRAINT campaigns_status_check;
ALTER TABLE campaigns ALTER COLUMN status SET DEFAULT 'draft';
ALTER TABLE campaigns ADD CONSTRAINT campaigns_status_check
    CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'rendered', 'cancelled', 'failed'));

ALTER TABLE campaigns
    ADD COLUMN kind          text NOT NULL DEFAULT 'batch' CHECK (kind IN ('batch', 'triggered')),
    -- Who: the topic the recipients must be subscribed to (with email marketing consent); NULL
    -- for none (the suppression list applies to every campaign).
    ADD COLUMN topic         text CHECK (length(topic) <= 128),
    -- When, as given (jobs.ParseSendAt): an RFC 3339 time, or local:HH:MM in each recipient's
    -- time zone; timezone is the zone of profiles without one.
    ADD COLUMN send_at       timestamptz,
    ADD COLUMN send_local    text CHECK (send_local ~ '^[0-2][0-9]:[0-5][0-9]$'),
    ADD COLUMN timezone      text NOT NULL DEFAULT 'UTC',
    ADD COLUMN quiet_hours   text CHECK (quiet_hours ~ '^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$'),
    -- At most cap_count messages per recipient, across campaigns, within cap_window_s seconds.
    ADD COLUMN cap_count     integer CHECK (cap_count > 0),
    ADD COLUMN cap_window_s  bigint CHECK (cap_window_s > 0),
    -- Triggered campaigns: the trigger (over event and profile), the delay before rendering,
    -- the condition re-checked then, and the window a customer gets at most one message in.
    ADD COLUMN trigger_expr  text,
    ADD COLUMN delay_s       bigint NOT NULL DEFAULT 0 CHECK (delay_s >= 0),
    ADD COLUMN cancel_if     text,
    ADD COLUMN once_per_s    bigint CHECK (once_per_s > 0),
    -- Fan-out: the scan's segment count, fixed at the first start so a resumed scan uses it.
    ADD COLUMN scan_segments integer,
    -- Completion: recipients recorded by the render jobs (any outcome); the campaign is rendered
    -- when fan-out is done and processed reaches audience_count. Both are kept by the inserts.
    ADD COLUMN processed     integer NOT NULL DEFAULT 0,
    ADD COLUMN scheduled_at  timestamptz,
    ADD COLUMN paused_at     timestamptz,
    ADD COLUMN cancelled_at  timestamptz,
    ADD CONSTRAINT campaigns_when_check CHECK (send_at IS NULL OR send_local IS NULL),
    ADD CONSTRAINT campaigns_trigger_check CHECK ((kind = 'triggered') = (trigger_expr IS NOT NULL));

-- campaign_scan_segments: the fan-out's persisted cursor, one row per parallel-scan segment.
-- A page's batches are enqueued in the transaction that moves its cursor (the last key read),
-- so a start job that dies resumes after the last page it enqueued.
CREATE TABLE campaign_scan_segments (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    segment     integer NOT NULL CHECK (segment >= 0),
    last_key    text,                 -- customer_id of the scan's LastEvaluatedKey; NULL: start
    done        boolean NOT NULL DEFAULT false,
    pages       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, segment)
);

-- campaign_counters: the breakdown of a campaign's recipients, kept by the statements that
-- record them: outcomes (rendered, excluded, skipped, failed), reasons (reason:no_consent ...),
-- what the scan left out (scan:not_in_segment ...), variants and content source outcomes.
CREATE TABLE campaign_counters (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    key         text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (campaign_id, key)
);

-- rendered_messages: the send time (senders claim a message from then on), the occurrence (''
-- for a batch campaign; the trigger window's start for a triggered one, which sends once per
-- window), and the statuses for recipients left out (excluded, with the reason) and for the
-- unclaimed messages of a cancelled campaign.
ALTER TABLE rendered_messages
    ADD COLUMN not_before timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN occurrence text NOT NULL DEFAULT '',
    ADD COLUMN variant    text NOT NULL DEFAULT '',
    ADD COLUMN claimed_at timestamptz;
ALTER TABLE rendered_messages DROP CONSTRAINT rendered_messages_status_check;
ALTER TABLE rendered_messages ADD CONSTRAINT rendered_messages_status_check
    CHECK (status IN ('rendered', 'skipped', 'failed', 'excluded', 'cancelled'));
ALTER TABLE rendered_messages DROP CONSTRAINT rendered_messages_campaign_id_customer_id_key;
ALTER TABLE rendered_messages ADD CONSTRAINT rendered_messages_campaign_customer_occurrence_key
    UNIQUE (campaign_id, customer_id, occurrence);

-- The frequency cap counts a customer's messages around a send time, across campaigns.
CREATE INDEX rendered_messages_customer_sends_idx ON rendered_messages (customer_id, not_before)
    WHERE status = 'rendered';

-- Bodies are ~10 KB of HTML each: lz4 compresses them faster than the default pglz.
ALTER TABLE rendered_messages ALTER COLUMN html SET COMPRESSION lz4;
ALTER TABLE rendered_messages ALTER COLUMN text_body SET COMPRESSION lz4;
