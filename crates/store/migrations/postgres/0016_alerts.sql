-- Alert rules (their definition as a document, core::alerts::AlertRule) with their state, and
-- each alert they opened: when, why, the calls that caused it, and when it resolved.
CREATE TABLE alert_rules (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT NOT NULL REFERENCES projects(id),
    name           TEXT    NOT NULL,
    definition     TEXT    NOT NULL,
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    firing         BOOLEAN NOT NULL DEFAULT FALSE,
    last_opened_at BIGINT,
    last_checked_at BIGINT,
    last_summary   TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX alert_rules_by_name ON alert_rules(project_id, name);

CREATE TABLE alerts (
    id          BIGSERIAL PRIMARY KEY,
    rule_id     BIGINT NOT NULL REFERENCES alert_rules(id),
    project_id  BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    resolved_at BIGINT,
    value       DOUBLE PRECISION,
    summary     TEXT    NOT NULL,
    call_ids    TEXT    NOT NULL,                -- JSON: the calls that caused it, newest first
    slack_error TEXT                             -- why Slack was not told, if it was not
);
CREATE INDEX alerts_by_rule ON alerts(rule_id, id);
CREATE INDEX alerts_by_project ON alerts(project_id, id);
-- What a rule reads: a project's evaluations, newest first.
CREATE INDEX call_evaluations_by_time ON call_evaluations(project_id, evaluated_at);
