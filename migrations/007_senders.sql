-- Senders: API keys for the HTTP API (tailor apikey create|list|revoke; internal/apikeys).

-- api_keys: the server stores only the SHA-256 of a key (key_hash), never the key, so a leaked
-- database or backup leaks no key. prefix is the key's first characters ("tlr_abcd"), shown
-- by `tailor apikey list` so an operator can tell keys apart. A revoked key keeps its row
-- (revoked_at set) for the audit trail; its name may then be reused by a new key, hence the
-- partial unique index instead of a UNIQUE column.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$'),
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    prefix       text NOT NULL CHECK (length(prefix) <= 16),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0
                     AND scopes <@ ARRAY['events', 'send', 'webhooks', 'admin']::text[]),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name_idx ON api_keys (name) WHERE revoked_at IS NULL;
