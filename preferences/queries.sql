-- name: topic-active
SELECT EXISTS (SELECT 1 FROM topics WHERE name = $1 AND archived_at IS NULL);

-- name: ineligible
-- One row per recipient who may not receive the message, with the first reason that applies.
-- $1 customer ids and $2 their lower-cased addresses (same order), $3 the topic ('' for none),
-- $4 the consent purpose a topic needs. The suppression list is matched by address (its key)
-- and by customer id (its partial index); subscriptions and consents by their primary keys.
SELECT id, reason FROM (
    SELECT r.id,
           CASE
             WHEN EXISTS (SELECT 1 FROM suppressions s WHERE s.email = r.email)
               OR EXISTS (SELECT 1 FROM suppressions s WHERE s.customer_id = r.id) THEN 'suppressed'
             WHEN $3 = '' THEN NULL
             WHEN COALESCE((SELECT sub.status FROM subscriptions sub WHERE sub.customer_id = r.id AND sub.topic = $3),
                           (SELECT t.default_status FROM topics t WHERE t.name = $3)) <> 'subscribed' THEN 'unsubscribed'
             WHEN NOT COALESCE((SELECT c.granted FROM consents c WHERE c.customer_id = r.id AND c.purpose = $4), false) THEN 'no_consent'
           END AS reason
    FROM unnest($1::text[], $2::text[]) AS r(id, email)
) checked
WHERE reason IS NOT NULL;
