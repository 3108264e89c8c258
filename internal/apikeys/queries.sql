-- Named queries over api_keys (migrations/007_senders.sql).

-- name: create
INSERT INTO api_keys (name, key_hash, prefix, scopes) VALUES ($1, $2, $3, $4)
RETURNING id, created_at;

-- name: list
-- Active keys first, then revoked ones, each oldest first.
SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at
FROM api_keys
ORDER BY revoked_at IS NOT NULL, id;

-- name: revoke
-- $2 > 0 selects by id, else $1 by name; only an active key is revoked.
UPDATE api_keys SET revoked_at = now()
WHERE revoked_at IS NULL AND (CASE WHEN $2::bigint > 0 THEN id = $2 ELSE name = $1 END)
RETURNING id, name, prefix, scopes, created_at, last_used_at, revoked_at;

-- name: active
-- What a Checker caches: every key that is not revoked (a few rows: keys are made by hand).
SELECT id, key_hash, scopes FROM api_keys WHERE revoked_at IS NULL;

-- name: touch
UPDATE api_keys SET last_used_at = now() WHERE id = $1;
