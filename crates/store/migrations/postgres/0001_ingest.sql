-- Projects, agents, calls and the webhook delivery log.
-- Times are integer milliseconds since the Unix epoch (UTC) on every backend. Every integer is
-- BIGINT so one row decoder serves both backends; JSON stays TEXT so values round-trip
-- byte for byte, as on SQLite.

CREATE TABLE projects (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    key_hash       TEXT    NOT NULL UNIQUE,   -- sha256 of the API key, hex
    key_prefix     TEXT    NOT NULL,          -- first characters of the key, for recognising it
    created_at     BIGINT  NOT NULL,
    key_rotated_at BIGINT
);

CREATE TABLE agents (
    id           BIGSERIAL PRIMARY KEY,
    project_id   BIGINT  NOT NULL REFERENCES projects(id),
    name         TEXT    NOT NULL,
    phone_number TEXT,
    description  TEXT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX agents_by_project ON agents(project_id, id);

CREATE TABLE deliveries (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT  NOT NULL REFERENCES projects(id),
    received_at    BIGINT  NOT NULL,
    route          TEXT    NOT NULL,
    status         BIGINT  NOT NULL,          -- the HTTP status we answered
    outcome        TEXT    NOT NULL,          -- accepted | rejected
    error          TEXT,                      -- machine code of the rejection
    detail         TEXT,
    errors         TEXT    NOT NULL DEFAULT '[]',  -- JSON [{path, message}]
    body_size      BIGINT  NOT NULL,
    body           TEXT,                      -- the body, cut at the log's cap
    body_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    accepted_calls BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_by_project ON deliveries(project_id, id DESC);
CREATE INDEX deliveries_by_time ON deliveries(received_at);

CREATE TABLE calls (
    seq               BIGSERIAL PRIMARY KEY,
    id                TEXT    NOT NULL UNIQUE,  -- our public id
    project_id        BIGINT  NOT NULL REFERENCES projects(id),
    agent_id          BIGINT  REFERENCES agents(id),
    external_id       TEXT    NOT NULL,         -- the sender's id
    content_hash      TEXT    NOT NULL,
    started_at        BIGINT  NOT NULL,
    ended_at          BIGINT  NOT NULL,
    to_phone_number   TEXT,
    from_phone_number TEXT,
    ended_reason      TEXT    NOT NULL,
    run_id            BIGINT,
    trace_id          TEXT,
    message_times     TEXT    NOT NULL,
    message_count     BIGINT  NOT NULL,
    messages          TEXT    NOT NULL,         -- JSON array of normalised messages
    metadata          TEXT    NOT NULL,         -- JSON object
    warnings          TEXT    NOT NULL,         -- JSON [{path, message}]
    raw               TEXT    NOT NULL,         -- the call object exactly as received
    delivery_id       BIGINT  NOT NULL,
    received_at       BIGINT  NOT NULL,
    -- Idempotency: concurrent requests with the same call meet here (INSERT … ON CONFLICT).
    UNIQUE (project_id, external_id)
);
CREATE INDEX calls_by_start ON calls(project_id, started_at DESC, seq DESC);
CREATE INDEX calls_by_agent ON calls(project_id, agent_id, started_at DESC, seq DESC);
