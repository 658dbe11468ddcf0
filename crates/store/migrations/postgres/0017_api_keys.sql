-- Several named keys per project, each with its scopes (core::access::Scopes bits), an optional
-- expiry, when it was last used, and revocation. A project's one key becomes its key "default"
-- with every scope; the key columns leave `projects`.
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    project_id   BIGINT  NOT NULL REFERENCES projects(id),
    name         TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,   -- sha256 of the key, hex
    key_prefix   TEXT    NOT NULL,          -- first characters of the key, for recognising it
    scopes       BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,                    -- set by the key's creator, or by a rotation's overlap
    last_used_at BIGINT,                    -- kept to the minute: a write per request would cost
    revoked_at   BIGINT
);
CREATE INDEX api_keys_by_project ON api_keys(project_id, id);

INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes, created_at)
    SELECT id, 'default', key_hash, key_prefix, 15, COALESCE(key_rotated_at, created_at)
    FROM projects;

ALTER TABLE projects DROP COLUMN key_hash, DROP COLUMN key_prefix, DROP COLUMN key_rotated_at;
