-- Outbound webhooks: a project's endpoints, the events written for them in the transaction of
-- what they report (an outbox), one delivery per event and endpoint (its own queue, leased like
-- jobs) and every attempt of it.
CREATE TABLE webhook_endpoints (
    id                    BIGSERIAL PRIMARY KEY,
    project_id            BIGINT  NOT NULL REFERENCES projects(id),
    url                   TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    events                BIGINT  NOT NULL,          -- a bit per event type (core::EventSet)
    enabled               BOOLEAN NOT NULL DEFAULT TRUE,
    cekura_secret_header  BOOLEAN NOT NULL DEFAULT FALSE, -- also send X-CEKURA-SECRET
    secret                TEXT    NOT NULL,          -- whsec_…: it must sign, so it is kept
    previous_secret       TEXT,                      -- still signs until previous_until
    previous_until        BIGINT,
    disabled_reason       TEXT,
    failing_since         BIGINT,                   -- first failed attempt since a success
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);
CREATE INDEX webhook_endpoints_by_project ON webhook_endpoints(project_id, id);

CREATE TABLE webhook_events (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT  NOT NULL REFERENCES projects(id),
    msg_id     TEXT    NOT NULL UNIQUE,              -- webhook-id, the same on every attempt
    type       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,                     -- the body, exactly as signed
    created_at BIGINT  NOT NULL
);

CREATE TABLE webhook_deliveries (
    id           BIGSERIAL PRIMARY KEY,
    project_id   BIGINT  NOT NULL,
    event_id     BIGINT  NOT NULL REFERENCES webhook_events(id),
    endpoint_id  BIGINT  NOT NULL REFERENCES webhook_endpoints(id),
    status       TEXT    NOT NULL,                   -- pending | sending | delivered | failed
    attempts     BIGINT  NOT NULL DEFAULT 0,
    run_at       BIGINT  NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_status  BIGINT,                            -- the receiver's last HTTP status
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX webhook_deliveries_ready ON webhook_deliveries(status, run_at, id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);

CREATE TABLE webhook_attempts (
    id              BIGSERIAL PRIMARY KEY,
    delivery_id     BIGINT  NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at    BIGINT  NOT NULL,
    request_headers TEXT    NOT NULL,                -- JSON, without the secret header
    status          BIGINT,
    response        TEXT,                            -- the answer's first 2 KiB
    duration_ms     BIGINT  NOT NULL,
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
