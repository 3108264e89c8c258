-- Named queries of tailor status (package opsstatus). Each is one cheap aggregate: status runs
-- them every --interval and the metrics collector at every scrape.

-- name: river-queues
-- River's unfinished jobs per queue and kind. The state filter uses River's
-- (state, queue, priority, scheduled_at, id) fetch index; finished jobs (completed, cancelled,
-- discarded) are left out, so the scan is as big as the backlog, not the retained history.
-- oldest_due_s is how long the oldest job that is due has waited since its scheduled_at: an
-- available job, or a scheduled or retryable one whose time has come (River's scheduler makes
-- those available; with no worker running, nothing does). oldest_running_s is how long the
-- longest-running job has run (attempted_at).
SELECT queue, kind,
       count(*) FILTER (WHERE state = 'available')                                   AS available,
       count(*) FILTER (WHERE state = 'scheduled')                                   AS scheduled,
       count(*) FILTER (WHERE state = 'retryable')                                   AS retryable,
       count(*) FILTER (WHERE state = 'running')                                     AS running,
       COALESCE(EXTRACT(EPOCH FROM now() - min(scheduled_at) FILTER (WHERE state = 'available' OR state IN ('scheduled', 'retryable') AND scheduled_at <= now())), 0)::float8 AS oldest_due_s,
       COALESCE(EXTRACT(EPOCH FROM now() - min(attempted_at) FILTER (WHERE state = 'running')), 0)::float8   AS oldest_running_s
FROM river_job
WHERE state IN ('available', 'scheduled', 'retryable', 'running', 'pending')
GROUP BY queue, kind
ORDER BY queue, kind;

-- name: campaigns-in-flight
-- Campaigns that are not settled (scheduled, running, paused) with their counters as one JSON
-- object (the keys of jobs.Progress.Counters), oldest first, at most $1.
SELECT c.id, c.name, c.kind, c.status, c.audience_count, c.processed, c.fanout_done,
       COALESCE((SELECT jsonb_object_agg(k.key, k.n) FROM campaign_counters k WHERE k.campaign_id = c.id), '{}'::jsonb) AS counters
FROM campaigns c
WHERE c.status IN ('scheduled', 'running', 'paused')
ORDER BY c.id
LIMIT $1;

-- name: dead-letters
-- Dead letters by source: pending (not replayed), all, and the newest one's time.
SELECT source,
       count(*) FILTER (WHERE replayed_at IS NULL) AS pending,
       count(*)                                    AS total,
       max(created_at)                             AS newest
FROM dead_letters
GROUP BY source
ORDER BY source;

-- name: sender-backlog
-- Rendered messages no sender has finished (status rendered, delivery NULL: the partial claim
-- index), as migrations/008_delivery.sql defines their states:
--   ready    claimable now: send time and retry time reached, no live lease
--   leased   a sender holds a live lease
--   expired  a lease ran out without an ack (counted in ready too: claimable again)
--   waiting  not claimable yet: send time or retry time ahead
-- oldest_ready_s is how long the oldest ready message has been claimable (its not_before).
SELECT count(*) FILTER (WHERE ready)                                              AS ready,
       count(*) FILTER (WHERE lease_until > now())                                AS leased,
       count(*) FILTER (WHERE lease_until <= now())                               AS expired,
       count(*) FILTER (WHERE NOT ready AND (lease_until IS NULL OR lease_until <= now())) AS waiting,
       COALESCE(EXTRACT(EPOCH FROM now() - min(GREATEST(not_before, COALESCE(retry_at, not_before))) FILTER (WHERE ready)), 0)::float8 AS oldest_ready_s
FROM (
    SELECT lease_until,
           (lease_until IS NULL OR lease_until <= now()) AND not_before <= now() AND (retry_at IS NULL OR retry_at <= now()) AS ready,
           not_before, retry_at
    FROM rendered_messages
    WHERE status = 'rendered' AND delivery IS NULL
) m;
