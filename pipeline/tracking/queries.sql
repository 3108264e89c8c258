-- name: record-hit
-- The rendered message a tracking token names, by the unique key the render jobs write
-- (rendered_messages_campaign_customer_occurrence_key), so the events carry the same message id
-- as the delivery outcomes; the hit is counted on its message_engagement row. $4 'open' or
-- 'click', $5 the hit's time. No row: no such message, nothing counted.
WITH m AS (
    SELECT id, campaign_id FROM rendered_messages WHERE campaign_id = $1 AND customer_id = $2 AND occurrence = $3
)
INSERT INTO message_engagement AS e (message_id, campaign_id, opens, clicks, first_open_at, first_click_at, last_at)
SELECT m.id, m.campaign_id, ($4 = 'open')::int, ($4 = 'click')::int,
       CASE WHEN $4 = 'open' THEN $5::timestamptz END, CASE WHEN $4 = 'click' THEN $5::timestamptz END, $5
FROM m
ON CONFLICT (message_id) DO UPDATE SET
    opens          = e.opens + EXCLUDED.opens,
    clicks         = e.clicks + EXCLUDED.clicks,
    first_open_at  = LEAST(e.first_open_at, EXCLUDED.first_open_at),
    first_click_at = LEAST(e.first_click_at, EXCLUDED.first_click_at),
    last_at        = GREATEST(e.last_at, EXCLUDED.last_at)
RETURNING e.message_id;

-- name: campaign-engagement
-- A campaign's opens and clicks: totals, and the messages opened or clicked at least once.
SELECT COALESCE(sum(opens), 0), count(*) FILTER (WHERE opens > 0),
       COALESCE(sum(clicks), 0), count(*) FILTER (WHERE clicks > 0)
FROM message_engagement WHERE campaign_id = $1;
