-- Outbound webhooks: a project's endpoints, the events written for them in the transaction of
-- what they report (an outbox), one delivery per event and endpoint (its own queue, leased like
-- jobs) and every attempt of it.
CREATE TABLE webhook_endpoints (
    id                    INTEGER PRIMARY KEY,
    project_id            INTEGER NOT NULL REFERENCES projects(id),
    url                   TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    events                INTEGER NOT NULL,          -- a bit per event type (core::EventSet)
    enabled               INTEGER NOT NULL DEFAULT 1,
    cekura_secret_header  INTEGER NOT NULL DEFAULT 0, -- also send X-CEKURA-SECRET
    secret                TEXT    NOT NULL,          -- whsec_…: it must sign, so it is kept
    previous_secret       TEXT,                      -- still signs until previous_until
    previous_until        INTEGER,
    disabled_reason       TEXT,
    failing_since         INTEGER,                   -- first failed attempt since a success
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_project ON webhook_endpoints(project_id, id);

CREATE TABLE webhook_events (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    msg_id     TEXT    NOT NULL UNIQUE,              -- webhook-id, the same on every attempt
    type       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,                     -- the body, exactly as signed
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL,
    event_id     INTEGER NOT NULL REFERENCES webhook_events(id),
    endpoint_id  INTEGER NOT NULL REFERENCES webhook_endpoints(id),
    status       TEXT    NOT NULL,                   -- pending | sending | delivered | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    locked_by    TEXT,
    locked_until INTEGER,
    last_status  INTEGER,                            -- the receiver's last HTTP status
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX webhook_deliveries_ready ON webhook_deliveries(status, run_at, id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);

CREATE TABLE webhook_attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at    INTEGER NOT NULL,
    request_headers TEXT    NOT NULL,                -- JSON, without the secret header
    status          INTEGER,
    response        TEXT,                            -- the answer's first 2 KiB
    duration_ms     INTEGER NOT NULL,
    error           TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts(delivery_id, id);

-- The status a run and a result were last announced in (run.completed, result.completed); a
-- final status not announced yet is what the notifier looks for. Runs and results already
-- final are not announced.
ALTER TABLE runs ADD COLUMN notified_status TEXT;
ALTER TABLE results ADD COLUMN notified_status TEXT;
UPDATE runs SET notified_status = status WHERE finished_at IS NOT NULL;
CREATE INDEX runs_to_notify ON runs(id)
    WHERE finished_at IS NOT NULL AND (notified_status IS NULL OR notified_status <> status);
