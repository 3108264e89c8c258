-- name: topic-active
SELECT EXISTS (SELECT 1 FROM topics WHERE name = $1 AND archived_at IS NULL);

-- name: ineligible
-- One row per recipient who may not receive the message, with the first reason that applies.
-- $1 customer ids and $2 their lower-cased addresses (same order), $3 the topic ('' for none),
-- $4 the consent purpose a topic needs. The suppression list is matched by address (its key)
-- and by customer id (its partial index), and what erasures kept of suppressed addresses by
-- the address's SHA-256; subscriptions and consents by their primary keys.
SELECT id, reason FROM (
    SELECT r.id,
           CASE
             WHEN EXISTS (SELECT 1 FROM suppressions s WHERE s.email = r.email)
               OR EXISTS (SELECT 1 FROM suppressions s WHERE s.customer_id = r.id)
               OR EXISTS (SELECT 1 FROM erased_suppressions e WHERE e.email_sha256 = sha256(convert_to(r.email, 'UTF8'))) THEN 'suppressed'
             WHEN $3 = '' THEN NULL
             WHEN COALESCE((SELECT sub.status FROM subscriptions sub WHERE sub.customer_id = r.id AND sub.topic = $3),
                           (SELECT t.default_status FROM topics t WHERE t.name = $3)) <> 'subscribed' THEN 'unsubscribed'
             WHEN NOT COALESCE((SELECT c.granted FROM consents c WHERE c.customer_id = r.id AND c.purpose = $4), false) THEN 'no_consent'
           END AS reason
    FROM unnest($1::text[], $2::text[]) AS r(id, email)
) checked
WHERE reason IS NOT NULL;

-- name: customer-by-id
SELECT id, email, COALESCE(locale, '') FROM customers WHERE id = $1;

-- name: customers-by-email
-- customers_email_lower_idx serves this; two rows are enough to know the address is shared.
SELECT id, email, COALESCE(locale, '') FROM customers WHERE lower(email) = lower($1) ORDER BY id LIMIT 2;

-- name: create-customer
INSERT INTO customers (id, email) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING;

-- name: topics-active
SELECT name FROM topics WHERE name = ANY($1::text[]) AND archived_at IS NULL;

-- name: upsert-subscriptions
-- $2 topics and $3 statuses (same order). A row is only overwritten by a change that is not
-- older than it (updated_at holds the occurred_at of the change that wrote it), so changes that
-- arrive out of order converge on the newest. RETURNING lists the topics written; the others
-- were stale.
INSERT INTO subscriptions AS s (customer_id, topic, status, source, updated_at)
SELECT $1, t.topic, t.status, $4, $5 FROM unnest($2::text[], $3::text[]) AS t(topic, status)
ON CONFLICT (customer_id, topic) DO UPDATE
SET status = EXCLUDED.status, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
WHERE s.updated_at <= EXCLUDED.updated_at
RETURNING topic;

-- name: upsert-consents
-- As upsert-subscriptions, ordered by consents.at.
INSERT INTO consents AS c (customer_id, purpose, granted, source, at)
SELECT $1, p.purpose, p.granted, p.source, $5 FROM unnest($2::text[], $3::boolean[], $4::text[]) AS p(purpose, granted, source)
ON CONFLICT (customer_id, purpose) DO UPDATE
SET granted = EXCLUDED.granted, source = EXCLUDED.source, at = EXCLUDED.at
WHERE c.at <= EXCLUDED.at
RETURNING purpose;

-- name: insert-audit
INSERT INTO preference_audit (customer_id, source, request_id, occurred_at, changes, outcome)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id;

-- name: delivery
-- $2 the retention in seconds: older records count as absent.
SELECT body_sha256, answer FROM webhook_deliveries
WHERE webhook_id = $1 AND received_at > now() - make_interval(secs => $2);

-- name: claim-delivery
-- Records an accepted delivery in the transaction that applied it. A concurrent delivery of the
-- same id blocks on the key until this commits, then finds the row and returns nothing; an
-- expired record is taken over.
INSERT INTO webhook_deliveries AS d (webhook_id, body_sha256, customer_id, answer) VALUES ($1, $2, $3, $4)
ON CONFLICT (webhook_id) DO UPDATE
SET body_sha256 = EXCLUDED.body_sha256, customer_id = EXCLUDED.customer_id, answer = EXCLUDED.answer, received_at = now()
WHERE d.received_at <= now() - make_interval(secs => $5)
RETURNING true;

-- name: purge-deliveries
DELETE FROM webhook_deliveries WHERE received_at <= now() - make_interval(secs => $1);

-- name: topic-create
INSERT INTO topics (name, description, default_status) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
RETURNING name, description, default_status, created_at, archived_at;

-- name: topic-list
SELECT name, description, default_status, created_at, archived_at FROM topics
WHERE $1 OR archived_at IS NULL ORDER BY name;

-- name: topic-archive
UPDATE topics SET archived_at = now() WHERE name = $1 AND archived_at IS NULL
RETURNING name, description, default_status, created_at, archived_at;

-- name: topic-get
SELECT name, description, default_status, created_at, archived_at FROM topics WHERE name = $1;

-- name: page-topics
-- Every active topic with the customer's status: the row's, or the topic's default.
SELECT t.name, t.description, COALESCE(s.status, t.default_status)
FROM topics t LEFT JOIN subscriptions s ON s.customer_id = $1 AND s.topic = t.name
WHERE t.archived_at IS NULL
ORDER BY t.name;

-- name: page-consent
-- Whether the customer has granted a purpose (email_marketing): false without a row.
SELECT COALESCE((SELECT granted FROM consents WHERE customer_id = $1 AND purpose = $2), false);

-- name: suppression-of
-- The suppression that applies to the customer, global unsubscribes first (the page can undo
-- those; a bounce or complaint it cannot).
SELECT reason FROM suppressions WHERE email = lower($1) OR customer_id = $2
ORDER BY (reason = 'unsubscribed') DESC LIMIT 1;

-- name: suppress
INSERT INTO suppressions (email, customer_id, reason, source) VALUES (lower($1), $2, 'unsubscribed', $3)
ON CONFLICT (email) DO NOTHING RETURNING true;

-- name: unsuppress
-- Only a global unsubscribe is undone by the recipient; bounces, complaints and an operator's
-- entries stay.
DELETE FROM suppressions WHERE (email = lower($1) OR customer_id = $2) AND reason = 'unsubscribed' RETURNING true;

-- name: forget-find
-- Every id and address the erasure covers: customers matched by id or address, and ids and
-- addresses that rendered messages and suppressions pair with them.
WITH c AS (
    SELECT id, lower(email) AS email FROM customers WHERE id = ANY($1::text[]) OR lower(email) = ANY($2::text[])
), m AS (
    SELECT customer_id AS id, lower(email) AS email FROM rendered_messages
    WHERE customer_id = ANY($1::text[]) OR lower(email) = ANY($2::text[])
       OR customer_id IN (SELECT id FROM c) OR lower(email) IN (SELECT email FROM c)
), s AS (
    SELECT customer_id AS id, email FROM suppressions
    WHERE customer_id = ANY($1::text[]) OR email = ANY($2::text[])
       OR customer_id IN (SELECT id FROM c) OR email IN (SELECT email FROM c)
)
SELECT id, email FROM c UNION SELECT id, email FROM m UNION SELECT id, email FROM s;

-- name: forget-keep-suppressions
-- What survives an erasure of a suppressed address: its hash and the reason.
INSERT INTO erased_suppressions (email_sha256, reason, created_at)
SELECT sha256(convert_to(email, 'UTF8')), reason, created_at FROM suppressions
WHERE email = ANY($2::text[]) OR customer_id = ANY($1::text[])
ON CONFLICT (email_sha256) DO NOTHING;

-- name: forget-suppressions
DELETE FROM suppressions WHERE email = ANY($2::text[]) OR customer_id = ANY($1::text[]);

-- name: forget-customers
-- After forget-subscriptions and forget-consents (so they are counted; the cascade would do).
DELETE FROM customers WHERE id = ANY($1::text[]);

-- name: forget-messages
DELETE FROM rendered_messages WHERE customer_id = ANY($1::text[]) OR lower(email) = ANY($2::text[]);

-- name: forget-audit
-- Allowed by the append-only trigger only with tailor.erasure set (forget-begin).
DELETE FROM preference_audit WHERE customer_id = ANY($1::text[]);

-- name: forget-begin
SELECT set_config('tailor.erasure', 'on', true);

-- name: forget-deliveries
DELETE FROM webhook_deliveries WHERE customer_id = ANY($1::text[]);

-- name: forget-dead-letters
-- dead_letter_mentions (005_preference_center.sql) says which mention an id or address.
DELETE FROM dead_letters d
WHERE dead_letter_mentions(d.payload, d.reason, $1::text[], $2::text[]);

-- name: forget-jobs
-- River jobs that are over (completed, cancelled, discarded) and whose arguments name the
-- customer (render batches carry customer ids). Jobs still to run are left to finish: with the
-- profile erased they render nothing for the customer, and they are deleted by River's
-- retention once completed.
DELETE FROM river_job j
WHERE j.state IN ('completed', 'cancelled', 'discarded')
  AND EXISTS (SELECT 1 FROM unnest($1::text[] || $2::text[]) AS x(v) WHERE position(to_json(x.v)::text IN j.args::text) > 0);

-- name: forget-record
INSERT INTO preference_audit (customer_id, source, occurred_at, changes, outcome)
VALUES (NULL, 'erasure', now(), $1, $2) RETURNING id;

-- name: export-customers
SELECT to_jsonb(c) FROM customers c WHERE id = ANY($1::text[]) ORDER BY id;

-- name: export-subscriptions
SELECT to_jsonb(s) FROM subscriptions s WHERE customer_id = ANY($1::text[]) ORDER BY customer_id, topic;

-- name: export-consents
SELECT to_jsonb(c) FROM consents c WHERE customer_id = ANY($1::text[]) ORDER BY customer_id, purpose;

-- name: export-suppressions
SELECT to_jsonb(s) FROM suppressions s WHERE email = ANY($2::text[]) OR customer_id = ANY($1::text[]) ORDER BY email;

-- name: export-audit
SELECT to_jsonb(a) FROM preference_audit a WHERE customer_id = ANY($1::text[]) ORDER BY id;

-- name: export-deliveries
SELECT jsonb_build_object('webhook_id', webhook_id, 'customer_id', customer_id, 'answer', answer::jsonb, 'received_at', received_at)
FROM webhook_deliveries WHERE customer_id = ANY($1::text[]) ORDER BY received_at;

-- name: export-messages
SELECT to_jsonb(m) FROM rendered_messages m WHERE customer_id = ANY($1::text[]) OR lower(email) = ANY($2::text[]) ORDER BY id;

-- name: export-dead-letters
-- The ones forget-dead-letters deletes; the payload as text (escaped where it is not UTF-8).
SELECT jsonb_build_object('id', d.id, 'source', d.source, 'reason', d.reason, 'created_at', d.created_at,
                          'payload', encode(d.payload, 'escape'))
FROM dead_letters d
WHERE dead_letter_mentions(d.payload, d.reason, $1::text[], $2::text[])
ORDER BY d.id;

-- name: subscription-status
SELECT status FROM subscriptions WHERE customer_id = $1 AND topic = $2;

-- name: forget-subscriptions
DELETE FROM subscriptions WHERE customer_id = ANY($1::text[]);

-- name: forget-consents
DELETE FROM consents WHERE customer_id = ANY($1::text[]);
