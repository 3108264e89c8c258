-- The claim / lease / ack store over rendered_messages (store.go), the event outbox
-- (outbox.go), retention (retention.go) and delivery counts. Times are the store's clock ($now
-- parameters), so every process agrees on what a lease is and tests can move time.

-- name: claim
-- Ready messages of claimable campaigns (running or rendered: never paused, cancelled, failed
-- or draft ones), leased in the statement that picks them, the earliest send time first. Each
-- campaign's messages are read by rendered_messages_claim_idx (campaign_id, not_before) in
-- its order, so messages of a paused or failed campaign are never scanned, and the plan does
-- not depend on statistics: with `campaign_id = ANY(...)` and no order, Postgres chose a
-- sequential scan once most of a table's messages were ready, which reads every delivered
-- message before the ready ones later in the campaign. SKIP LOCKED lets many senders claim at
-- once without waiting for each other or overlapping; a cancel that committed meanwhile
-- shows in the row (status cancelled), which FOR UPDATE re-checks. $1 now, $2 limit, $3
-- campaign (0: any), $4 lease in milliseconds.
WITH picked AS (
    SELECT p.id FROM campaigns c
    CROSS JOIN LATERAL (
        SELECT m.id FROM rendered_messages m
        WHERE m.campaign_id = c.id
          AND m.status = 'rendered' AND m.delivery IS NULL AND m.not_before <= $1
          AND (m.lease_until IS NULL OR m.lease_until <= $1)
          AND (m.retry_at IS NULL OR m.retry_at <= $1)
        ORDER BY m.not_before
        LIMIT $2
        FOR UPDATE OF m SKIP LOCKED
    ) p
    WHERE c.status IN ('running', 'rendered') AND ($3::bigint = 0 OR c.id = $3)
    LIMIT $2
)
UPDATE rendered_messages m
SET receipt = gen_random_uuid()::text, attempts = m.attempts + 1, claimed_at = $1,
    lease_until = $1::timestamptz + $4 * interval '1 millisecond', retry_at = NULL
FROM picked
WHERE m.id = picked.id
RETURNING m.id, m.campaign_id, m.customer_id, m.email, m.subject, m.preheader, m.html, m.text_body, m.headers,
          m.attempts, m.receipt, m.lease_until,
          COALESCE((SELECT c.topic FROM campaigns c WHERE c.id = m.campaign_id), ''),
          COALESCE((SELECT concat_ws(' ', NULLIF(cu.first_name, ''), NULLIF(cu.last_name, '')) FROM customers cu
                    WHERE cu.id = m.customer_id), '');

-- name: suppress-claimed
-- The claim-time re-check left these out: final, with the reason, never handed out.
UPDATE rendered_messages m SET delivery = 'suppressed', delivery_reason = r.reason, lease_until = NULL, acked_at = $1
FROM unnest($2::bigint[], $3::text[]) AS r(id, reason)
WHERE m.id = r.id;

-- name: lock-acked
-- Acks lock their rows in id order first, so two acks that share messages (a repeated ack)
-- wait for each other instead of deadlocking.
SELECT id FROM rendered_messages WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE;

-- name: ack
-- One outcome per message, taken only under the message's current receipt while its lease
-- stands (lease_until is cleared by the first ack): a stale receipt, or an ack already taken,
-- updates nothing and is classified by ack-state. $9 now.
UPDATE rendered_messages m SET
    delivery        = CASE WHEN o.status = 'retry' THEN NULL ELSE o.status END,
    last_outcome    = o.status,
    bounce          = NULLIF(o.bounce, ''),
    provider_id     = NULLIF(o.provider_id, ''),
    reply           = NULLIF(o.reply, ''),
    delivery_reason = NULLIF(o.reason, ''),
    lease_until     = NULL,
    retry_at        = CASE WHEN o.status = 'retry' THEN $9::timestamptz + o.retry_ms * interval '1 millisecond' END,
    claimed_at      = CASE WHEN o.status = 'retry' THEN NULL ELSE m.claimed_at END,
    acked_at        = CASE WHEN o.status = 'retry' THEN NULL ELSE $9 END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
     AS o(id, receipt, status, bounce, provider_id, reply, reason, retry_ms)
WHERE m.id = o.id AND m.receipt = o.receipt AND m.lease_until IS NOT NULL AND m.delivery IS NULL
RETURNING m.id, m.campaign_id, m.customer_id, m.email, m.attempts;

-- name: ack-state
SELECT id, COALESCE(receipt, ''), lease_until IS NOT NULL, COALESCE(last_outcome, ''), status
FROM rendered_messages WHERE id = ANY($1::bigint[]);

-- name: suppress-addresses
-- Hard bounces and complaints join the suppression list (one row per lower-cased address; the
-- caller passes each address once). They replace a global unsubscribe, which the recipient
-- could undo on the preference page; a bounce or complaint stays.
INSERT INTO suppressions AS s (email, customer_id, reason, source, detail)
SELECT lower(t.email), t.customer_id, t.reason, 'sender', left(NULLIF(t.detail, ''), 2000)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(email, customer_id, reason, detail)
ON CONFLICT (email) DO UPDATE
SET reason = EXCLUDED.reason, source = EXCLUDED.source, detail = EXCLUDED.detail,
    customer_id = COALESCE(s.customer_id, EXCLUDED.customer_id), created_at = now()
WHERE s.reason = 'unsubscribed';

-- name: outbox-insert
INSERT INTO delivery_outbox (partition_key, payload) SELECT * FROM unnest($1::text[], $2::bytea[]);

-- name: outbox-take
-- The oldest pending events, locked for the length of the publisher's transaction: several
-- publishers (one per tailor serve / tailor relay) take disjoint batches.
SELECT id, partition_key, payload FROM delivery_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED;

-- name: outbox-delete
DELETE FROM delivery_outbox WHERE id = ANY($1::bigint[]);

-- name: outbox-pending
SELECT count(*) FROM delivery_outbox;

-- name: message
SELECT m.id, m.campaign_id, m.customer_id, m.email, m.status, COALESCE(m.reason, ''), m.not_before,
       COALESCE(m.delivery, ''), m.attempts, m.claimed_at, m.lease_until, m.retry_at, COALESCE(m.last_outcome, ''),
       COALESCE(m.bounce, ''), COALESCE(m.provider_id, ''), COALESCE(m.reply, ''), COALESCE(m.delivery_reason, ''),
       m.acked_at, m.body_sha256, m.body_deleted_at, c.status
FROM rendered_messages m JOIN campaigns c ON c.id = m.campaign_id
WHERE m.id = $1;

-- name: counts
-- One pass over a campaign's rendered messages (rendered_messages_campaign_customer_occurrence_key
-- finds them). $2 now.
SELECT count(*) FILTER (WHERE delivery IS NULL AND not_before > $2),
       count(*) FILTER (WHERE delivery IS NULL AND not_before <= $2 AND (lease_until IS NULL OR lease_until <= $2)
                              AND (retry_at IS NULL OR retry_at <= $2)),
       count(*) FILTER (WHERE delivery IS NULL AND lease_until > $2),
       count(*) FILTER (WHERE delivery IS NULL AND lease_until IS NULL AND retry_at > $2),
       count(*) FILTER (WHERE delivery = 'sent'),
       count(*) FILTER (WHERE delivery = 'bounced' AND bounce = 'hard'),
       count(*) FILTER (WHERE delivery = 'bounced' AND bounce IS DISTINCT FROM 'hard'),
       count(*) FILTER (WHERE delivery = 'complained'),
       count(*) FILTER (WHERE delivery = 'failed'),
       count(*) FILTER (WHERE delivery = 'suppressed'),
       count(*) FILTER (WHERE delivery = 'exported')
FROM rendered_messages WHERE campaign_id = $1 AND status = 'rendered';

-- name: delete-bodies
-- Retention: the bodies of messages whose final ack is older than the retention, a batch at a
-- time (rendered_messages_retention_idx). The hash of the body was taken at render; a row
-- rendered before there was one gets it now, from the body about to go.
WITH due AS (
    SELECT id FROM rendered_messages
    WHERE acked_at IS NOT NULL AND body_deleted_at IS NULL AND acked_at < $1
    ORDER BY acked_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE rendered_messages m
SET body_sha256 = COALESCE(m.body_sha256, sha256(convert_to(m.html, 'UTF8') || '\x00'::bytea || convert_to(m.text_body, 'UTF8'))),
    html = '', text_body = '', body_deleted_at = $3
FROM due WHERE m.id = due.id;

-- name: campaign-pending
-- Whether a campaign still has messages to deliver (EXISTS stops at the first, found through
-- rendered_messages_claim_idx), with its status. No row: no such campaign.
SELECT c.status, EXISTS (SELECT 1 FROM rendered_messages m WHERE m.campaign_id = c.id AND m.status = 'rendered' AND m.delivery IS NULL)
FROM campaigns c WHERE c.id = $1;

-- name: mark-exported
-- Messages a batch sender took through tailor messages export: final, under the receipt of
-- the claim that handed them out (one whose lease expired and went elsewhere is not marked).
UPDATE rendered_messages m SET delivery = 'exported', last_outcome = 'exported', lease_until = NULL, acked_at = $1
FROM unnest($2::bigint[], $3::text[]) AS e(id, receipt)
WHERE m.id = e.id AND m.receipt = e.receipt AND m.delivery IS NULL AND m.lease_until IS NOT NULL;
