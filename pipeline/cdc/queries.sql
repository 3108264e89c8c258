-- Queries of the cdc package (loaded by name with internal/sqlfile).

-- name: try_lock
-- One active process per slot: a session advisory lock keyed by the slot name. The key space is
-- shared with other advisory locks of the database, hence the 'tailor.cdc:' namespace in the hash.
SELECT pg_try_advisory_lock(hashtextextended('tailor.cdc:' || $1, 0));

-- name: ping
SELECT 1;

-- name: wal_level
SHOW wal_level;

-- name: publication_ddl
-- DDL cannot take parameters: format() quotes the publication's name. SET TABLE makes an existing
-- publication cover exactly the three tables (older versions covered customers only).
SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)
    THEN format('ALTER PUBLICATION %I SET TABLE customers, subscriptions, consents', $1)
    ELSE format('CREATE PUBLICATION %I FOR TABLE customers, subscriptions, consents', $1)
END;

-- name: publication_tables
SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename;

-- name: slot
-- Slot names are unique in the cluster: a slot of another database, a physical one or one of
-- another plugin is found too, so that CDC can say so instead of failing to create its own.
SELECT COALESCE(confirmed_flush_lsn::text, ''), active, slot_type, COALESCE(plugin, ''),
       COALESCE(database = current_database(), false)
FROM pg_replication_slots WHERE slot_name = $1;

-- name: backfilled
SELECT consistent_lsn::text FROM cdc_slots WHERE slot_name = $1;

-- name: drop_slot
SELECT pg_drop_replication_slot($1);

-- name: forget_slot
DELETE FROM cdc_slots WHERE slot_name = $1;

-- name: mark_backfilled
INSERT INTO cdc_slots (slot_name, consistent_lsn, backfilled_rows) VALUES ($1, $2::text::pg_lsn, $3)
ON CONFLICT (slot_name) DO UPDATE
SET consistent_lsn = EXCLUDED.consistent_lsn, backfilled_rows = EXCLUDED.backfilled_rows, backfilled_at = now();

-- name: backfill_customers
-- Read in the slot's exported snapshot, in text format so values decode exactly as streamed ones.
SELECT * FROM customers;

-- name: backfill_subscriptions
SELECT * FROM subscriptions;

-- name: backfill_consents
SELECT * FROM consents;

-- name: status
-- Lag in bytes is WAL written since the slot's confirmed position; retained WAL is what the server
-- keeps for the slot (from restart_lsn). Lag in seconds is the walsender's flush_lag (the time
-- between WAL being written and the client confirming it), NULL when idle or not streaming.
-- Column names match cdc.Status's db tags (pgx.RowToStructByName).
SELECT s.slot_name, s.active, COALESCE(s.active_pid, 0) AS pid,
       COALESCE(s.confirmed_flush_lsn::text, '') AS confirmed_flush_lsn, pg_current_wal_lsn()::text AS current_lsn,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint AS lag_bytes,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint AS retained_bytes,
       COALESCE(EXTRACT(epoch FROM r.flush_lag), 0)::float8 AS lag_seconds,
       COALESCE(s.wal_status, '') AS wal_status,
       COALESCE((SELECT b.consistent_lsn::text FROM cdc_slots b WHERE b.slot_name = s.slot_name), '') AS backfilled_lsn,
       COALESCE((SELECT b.backfilled_at FROM cdc_slots b WHERE b.slot_name = s.slot_name), 'epoch'::timestamptz) AS backfilled_at
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = $1 AND s.database = current_database();
