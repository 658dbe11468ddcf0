-- Calls from vendors' own webhooks. An agent knows the ids a vendor gives it (a Vapi
-- assistant, a Retell or ElevenLabs agent) as a JSON array of strings, so a vendor's call finds
-- its agent; a project keeps each vendor's signing secret (write-only through the API).
ALTER TABLE agents ADD COLUMN external_ids TEXT NOT NULL DEFAULT '[]';

CREATE TABLE vendor_secrets (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    vendor     TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, vendor)
);
