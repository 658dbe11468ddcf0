-- Alert rules (their definition as a document, core::alerts::AlertRule) with their state, and
-- each alert they opened: when, why, the calls that caused it, and when it resolved.
CREATE TABLE alert_rules (
    id             INTEGER PRIMARY KEY,
    project_id     INTEGER NOT NULL REFERENCES projects(id),
    name           TEXT    NOT NULL,
    definition     TEXT    NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1,
    firing         INTEGER NOT NULL DEFAULT 0,
    last_opened_at INTEGER,
    last_checked_at INTEGER,
    last_summary   TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX alert_rules_by_name ON alert_rules(project_id, name);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    rule_id     INTEGER NOT NULL REFERENCES alert_rules(id),
    project_id  INTEGER NOT NULL,
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    value       REAL,
    summary     TEXT    NOT NULL,
    call_ids    TEXT    NOT NULL,                -- JSON: the calls that caused it, newest first
    slack_error TEXT                             -- why Slack was not told, if it was not
);
CREATE INDEX alerts_by_rule ON alerts(rule_id, id);
CREATE INDEX alerts_by_project ON alerts(project_id, id);
-- What a rule reads: a project's evaluations, newest first.
CREATE INDEX call_evaluations_by_time ON call_evaluations(project_id, evaluated_at);
