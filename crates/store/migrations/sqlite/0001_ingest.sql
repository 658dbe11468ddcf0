-- Projects, agents, calls and the webhook delivery log.
-- Times are integer milliseconds since the Unix epoch (UTC) on every backend.

CREATE TABLE projects (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    key_hash       TEXT    NOT NULL UNIQUE,   -- sha256 of the API key, hex
    key_prefix     TEXT    NOT NULL,          -- first characters of the key, for recognising it
    created_at     INTEGER NOT NULL,
    key_rotated_at INTEGER
);

CREATE TABLE agents (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects(id),
    name         TEXT    NOT NULL,
    phone_number TEXT,
    description  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX agents_by_project ON agents(project_id, id);

CREATE TABLE deliveries (
    id             INTEGER PRIMARY KEY,
    project_id     INTEGER NOT NULL REFERENCES projects(id),
    received_at    INTEGER NOT NULL,
    route          TEXT    NOT NULL,
    status         INTEGER NOT NULL,          -- the HTTP status we answered
    outcome        TEXT    NOT NULL,          -- accepted | rejected
    error          TEXT,                      -- machine code of the rejection
    detail         TEXT,
    errors         TEXT    NOT NULL DEFAULT '[]',  -- JSON [{path, message}]
    body_size      INTEGER NOT NULL,
    body           TEXT,                      -- the body, cut at the log's cap
    body_truncated INTEGER NOT NULL DEFAULT 0,
    accepted_calls INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_by_project ON deliveries(project_id, id DESC);
CREATE INDEX deliveries_by_time ON deliveries(received_at);

CREATE TABLE calls (
    seq               INTEGER PRIMARY KEY,
    id                TEXT    NOT NULL UNIQUE,  -- our public id
    project_id        INTEGER NOT NULL REFERENCES projects(id),
    agent_id          INTEGER REFERENCES agents(id),
    external_id       TEXT    NOT NULL,         -- the sender's id
    content_hash      TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER NOT NULL,
    to_phone_number   TEXT,
    from_phone_number TEXT,
    ended_reason      TEXT    NOT NULL,
    run_id            INTEGER,
    trace_id          TEXT,
    message_times     TEXT    NOT NULL,
    message_count     INTEGER NOT NULL,
    messages          TEXT    NOT NULL,         -- JSON array of normalised messages
    metadata          TEXT    NOT NULL,         -- JSON object
    warnings          TEXT    NOT NULL,         -- JSON [{path, message}]
    raw               TEXT    NOT NULL,         -- the call object exactly as received
    delivery_id       INTEGER NOT NULL,
    received_at       INTEGER NOT NULL,
    UNIQUE (project_id, external_id)
);
CREATE INDEX calls_by_start ON calls(project_id, started_at DESC, seq DESC);
CREATE INDEX calls_by_agent ON calls(project_id, agent_id, started_at DESC, seq DESC);
