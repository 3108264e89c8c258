-- name: insert-campaign
INSERT INTO campaigns (name, kind, template_name, template_version, template_files, segment, topic, timezone, quiet_hours,
                       cap_count, cap_window_s, trigger_expr, delay_s, cancel_if, once_per_s, track)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING id, created_at;

-- name: get-campaign
SELECT id, name, kind, template_name, template_version, template_files, segment, topic, send_at, send_local, timezone,
       quiet_hours, cap_count, cap_window_s, trigger_expr, delay_s, cancel_if, once_per_s, track,
       status, audience_count, processed, fanout_done, COALESCE(error, ''),
       created_at, scheduled_at, started_at, paused_at, finished_at, cancelled_at
FROM campaigns WHERE id = $1;

-- name: campaign-state
-- What every render job reads before working: cheap, the definition is cached per process.
SELECT status FROM campaigns WHERE id = $1;

-- name: campaign-exists
SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1);

-- name: topic-active
SELECT EXISTS (SELECT 1 FROM topics WHERE name = $1 AND archived_at IS NULL);

-- name: list-campaigns
-- Newest first; the counts are the counters the render jobs keep, not a count of messages.
SELECT c.id, c.name, c.template_name, c.kind, c.status, c.audience_count, c.send_at, c.send_local, c.created_at,
       COALESCE((SELECT n FROM campaign_counters k WHERE k.campaign_id = c.id AND k.key = 'rendered'), 0),
       COALESCE((SELECT n FROM campaign_counters k WHERE k.campaign_id = c.id AND k.key = 'excluded'), 0),
       c.processed - COALESCE((SELECT sum(n) FROM campaign_counters k WHERE k.campaign_id = c.id AND k.key IN ('rendered', 'excluded')), 0)
FROM campaigns c ORDER BY c.id DESC LIMIT $1;

-- name: lock-campaign
SELECT kind, status FROM campaigns WHERE id = $1 FOR UPDATE;

-- name: schedule-campaign
UPDATE campaigns SET status = 'scheduled', send_at = $2, send_local = $3, scheduled_at = now() WHERE id = $1;

-- name: activate-triggered
UPDATE campaigns SET status = 'running', scheduled_at = now(), started_at = now() WHERE id = $1;

-- name: pause-campaign
UPDATE campaigns SET status = 'paused', paused_at = now() WHERE id = $1;

-- name: resume-campaign
-- Back to where it was: running once the start job ran (or listening, for a triggered one).
UPDATE campaigns SET status = CASE WHEN started_at IS NOT NULL THEN 'running' ELSE 'scheduled' END, paused_at = NULL
WHERE id = $1;

-- name: cancel-campaign
UPDATE campaigns SET status = 'cancelled', cancelled_at = now(), finished_at = COALESCE(finished_at, now()) WHERE id = $1;

-- name: cancel-messages
-- No sender ever gets a message of a cancelled campaign: the unclaimed ones are cancelled in
-- the transaction that cancels the campaign (a render job that commits later sees the status),
-- and so are the undelivered ones whose lease expired (their sender is gone). Messages under a
-- live lease stay with their sender, who may still ack them.
UPDATE rendered_messages SET status = 'cancelled', reason = 'campaign cancelled'
WHERE campaign_id = $1 AND status = 'rendered'
  AND (claimed_at IS NULL OR (delivery IS NULL AND lease_until IS NOT NULL AND lease_until <= now()));

-- name: start-campaign
-- Only a scheduled campaign starts; a retried start job finds it running and resumes fan-out.
-- The scan's segment count is fixed at the first start.
UPDATE campaigns SET status = 'running', started_at = COALESCE(started_at, $3), scan_segments = COALESCE(scan_segments, $2)
WHERE id = $1 AND status IN ('scheduled', 'running')
RETURNING status, scan_segments;

-- name: init-scan-segments
INSERT INTO campaign_scan_segments (campaign_id, segment)
SELECT $1, g FROM generate_series(0, $2 - 1) g
ON CONFLICT DO NOTHING;

-- name: scan-segments
SELECT segment, last_key, done FROM campaign_scan_segments WHERE campaign_id = $1 ORDER BY segment;

-- name: advance-scan
-- A page's cursor moves in the transaction that enqueues the page's batches; the row lock and
-- the expected old cursor make a concurrent duplicate start job's page a no-op.
UPDATE campaign_scan_segments SET last_key = $4, done = $5, pages = pages + 1
WHERE campaign_id = $1 AND segment = $2 AND last_key IS NOT DISTINCT FROM $3 AND NOT done;

-- name: add-audience
UPDATE campaigns SET audience_count = audience_count + $2 WHERE id = $1 RETURNING status;

-- name: lock-fanout
SELECT status FROM campaigns WHERE id = $1 FOR UPDATE;

-- name: finish-fanout
-- Runs after lock-fanout in a new statement, so it sees every render job that committed
-- before the lock: the campaign completes here when the last batch finished first.
UPDATE campaigns SET fanout_done = true,
       status = CASE WHEN status IN ('running', 'paused') AND processed >= audience_count THEN 'rendered' ELSE status END,
       finished_at = CASE WHEN status IN ('running', 'paused') AND processed >= audience_count THEN now() ELSE finished_at END
WHERE id = $1
RETURNING status;

-- name: fail-campaign
UPDATE campaigns SET status = 'failed', error = $2, finished_at = now()
WHERE id = $1 AND status IN ('scheduled', 'running', 'paused');

-- name: add-counters
-- Keys in sorted order, so concurrent jobs lock counter rows in the same order.
INSERT INTO campaign_counters (campaign_id, key, n)
SELECT $1, k, n FROM unnest($2::text[], $3::bigint[]) AS t(k, n) ORDER BY k
ON CONFLICT (campaign_id, key) DO UPDATE SET n = campaign_counters.n + EXCLUDED.n;

-- name: counters
SELECT key, n FROM campaign_counters WHERE campaign_id = $1 ORDER BY key;

-- name: already-recorded
-- Which of a batch's recipients a previous run of the job recorded (a retry, a rescued job, a
-- batch split by its time budget): they are not rendered again.
SELECT customer_id FROM rendered_messages WHERE campaign_id = $1 AND customer_id = ANY($2) AND occurrence = $3;

-- name: insert-messages
-- A batch's rows when the COPY found one recorded already (two runs of one job at once): one
-- statement for the whole batch (unnest keeps it a single round trip), ON CONFLICT skips the
-- recipients recorded before. It returns the customers it recorded.
WITH ins AS (
    INSERT INTO rendered_messages (campaign_id, customer_id, email, status, subject, preheader, html, text_body, headers,
                                   provenance, reason, not_before, occurrence, variant, body_sha256)
    SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[],
                            $10::jsonb[], $11::text[], $12::timestamptz[], $13::text[], $14::text[], $15::bytea[])
    ON CONFLICT (campaign_id, customer_id, occurrence) DO NOTHING
    RETURNING customer_id
)
SELECT COALESCE(array_agg(customer_id), '{}') FROM ins;

-- name: count-recorded
-- In the transaction that recorded $2 recipients: the campaign's processed counter grows by
-- them (a triggered campaign's audience too) and the last one completes a batch campaign (the
-- row lock serialises this with finish-fanout and with cancel). It returns the campaign's
-- status: a cancel that committed meanwhile shows here.
UPDATE campaigns c SET processed = processed + $2,
       audience_count = audience_count + CASE WHEN c.kind = 'triggered' THEN $2 ELSE 0 END,
       status = CASE WHEN c.kind = 'batch' AND status IN ('running', 'paused') AND fanout_done
                          AND processed + $2 >= audience_count THEN 'rendered' ELSE status END,
       finished_at = CASE WHEN c.kind = 'batch' AND status IN ('running', 'paused') AND fanout_done
                          AND processed + $2 >= audience_count THEN now() ELSE finished_at END
WHERE id = $1
RETURNING status;

-- name: cancel-inserted
-- The campaign was cancelled while this batch rendered: its rows are cancelled too.
UPDATE rendered_messages SET status = 'cancelled', reason = 'campaign cancelled'
WHERE campaign_id = $1 AND customer_id = ANY($2) AND status = 'rendered';

-- name: lock-customers
-- The frequency cap is safe under concurrency: a transaction-level advisory lock per customer,
-- taken in key order (no deadlock), serialises every render of one customer across campaigns.
SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 7461) AS k FROM unnest($1::text[]) id ORDER BY 1) t;

-- name: recent-sends
-- Messages each customer has (other campaigns and earlier occurrences), within the cap window
-- either side of the send time. Uses rendered_messages_customer_sends_idx.
SELECT m.customer_id, count(*) FROM rendered_messages m
JOIN unnest($1::text[], $2::timestamptz[]) AS r(id, at) ON m.customer_id = r.id
WHERE m.status = 'rendered' AND m.not_before > r.at - $3 * interval '1 second' AND m.not_before < r.at + $3 * interval '1 second'
GROUP BY m.customer_id;

-- name: list-messages
SELECT id, campaign_id, customer_id, email, status, subject, preheader, html, text_body, headers, provenance, variant,
       COALESCE(reason, ''), not_before, occurrence, created_at
FROM rendered_messages WHERE campaign_id = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: active-triggers
SELECT id FROM campaigns WHERE kind = 'triggered' AND status = 'running' ORDER BY id;
