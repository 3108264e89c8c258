-- Named queries over dead_letters (migrations/001_foundation.sql).

-- name: insert
INSERT INTO dead_letters (source, reason, payload) VALUES ($1, $2, $3) RETURNING id;

-- name: list
-- Newest first, keyset-paginated on id (the index on (source, created_at) serves the source
-- filter; ids grow with created_at).
SELECT id, source, reason, payload, created_at, replayed_at
FROM dead_letters
WHERE ($1 = '' OR source = $1)
  AND ($2::bigint = 0 OR id < $2)
  AND ($3 OR replayed_at IS NULL)
ORDER BY id DESC
LIMIT $4;

-- name: get
SELECT id, source, reason, payload, created_at, replayed_at FROM dead_letters WHERE id = $1;

-- name: mark_replayed
UPDATE dead_letters SET replayed_at = now() WHERE id = $1 AND replayed_at IS NULL;
