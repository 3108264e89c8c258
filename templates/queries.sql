-- name: publish-version
-- Insert, or read back the stored row when (name, version) exists, in one round trip. Under a
-- concurrent publish of the same version the INSERT waits for the other transaction and then
-- does nothing, but the SELECT runs on this statement's snapshot, which cannot see that row:
-- the statement returns no row and Publish runs it again.
WITH ins AS (
    INSERT INTO template_versions (name, version, files, checksum)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (name, version) DO NOTHING
    RETURNING checksum, published_at
)
SELECT checksum, published_at, true FROM ins
UNION ALL
SELECT checksum, published_at, false FROM template_versions
WHERE name = $1 AND version = $2 AND NOT EXISTS (SELECT 1 FROM ins);

-- name: get-version
SELECT files, checksum, published_at FROM template_versions WHERE name = $1 AND version = $2;

-- name: latest-version
-- The (name, version) unique index serves this ORDER BY ... LIMIT 1 backwards.
SELECT files, checksum, published_at FROM template_versions WHERE name = $1
ORDER BY version DESC LIMIT 1;
