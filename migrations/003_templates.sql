-- Published template versions. A version is immutable: `tailor template publish` inserts a row
-- and never updates one; publishing changed content under the same (name, version) is refused,
-- publishing identical content again is a no-op (same checksum).
CREATE TABLE template_versions (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    version      integer NOT NULL CHECK (version > 0),
    files        jsonb NOT NULL,          -- file name -> content, as templates.FromFiles takes them
    checksum     text NOT NULL,           -- sha256 hex of the files (templates.Checksum)
    published_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
