-- name: insert-campaign
INSERT INTO campaigns (name, template_name, template_version, template_files, segment)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, created_at;

-- name: get-campaign
SELECT id, name, template_name, template_version, template_files, segment, status, audience_count,
       fanout_done, COALESCE(error, ''), created_at, started_at, finished_at
FROM campaigns WHERE id = $1;

-- name: list-campaigns
-- Newest first; counts come from rendered_messages, grouped by status.
SELECT c.id, c.name, c.template_name, c.status, c.audience_count, c.created_at,
       count(m.id) FILTER (WHERE m.status = 'rendered') AS rendered,
       count(m.id) FILTER (WHERE m.status = 'skipped') AS skipped
FROM campaigns c LEFT JOIN rendered_messages m ON m.campaign_id = c.id
GROUP BY c.id ORDER BY c.id DESC LIMIT $1;

-- name: start-campaign
-- Only a scheduled campaign starts; a retried start job finds it running and resumes fan-out.
UPDATE campaigns SET status = 'running', started_at = COALESCE(started_at, now())
WHERE id = $1 AND status IN ('scheduled', 'running')
RETURNING status;

-- name: finish-fanout
UPDATE campaigns SET audience_count = $2, fanout_done = true WHERE id = $1;

-- name: fail-campaign
UPDATE campaigns SET status = 'failed', error = $2, finished_at = now() WHERE id = $1;

-- name: insert-messages
-- One statement for a whole batch: unnest keeps it a single round trip, and ON CONFLICT makes
-- a re-run of the job a no-op for recipients already rendered.
INSERT INTO rendered_messages (campaign_id, customer_id, email, status, subject, preheader, html, text_body, headers, provenance, reason)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[])
ON CONFLICT (campaign_id, customer_id) DO NOTHING;

-- name: maybe-finish-campaign
-- The campaign is rendered once fan-out is done and every audience member has a row.
UPDATE campaigns c SET status = 'rendered', finished_at = now()
WHERE c.id = $1 AND c.status = 'running' AND c.fanout_done
  AND (SELECT count(*) FROM rendered_messages m WHERE m.campaign_id = c.id) >= c.audience_count;

-- name: list-messages
SELECT id, campaign_id, customer_id, email, status, subject, preheader, html, text_body, provenance, COALESCE(reason, ''), created_at
FROM rendered_messages WHERE campaign_id = $1 AND id > $2 ORDER BY id LIMIT $3;
