-- name: message-id
-- The rendered message a tracking token names, by the unique key the render jobs write
-- (rendered_messages_campaign_customer_occurrence_key), so the events carry the same message id
-- as the delivery outcomes.
SELECT id FROM rendered_messages WHERE campaign_id = $1 AND customer_id = $2 AND occurrence = $3;
