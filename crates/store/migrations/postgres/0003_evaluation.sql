-- Metrics, evaluations, the job queue, the judge cache, rubrics.

CREATE TABLE metrics (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT  NOT NULL REFERENCES projects(id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,               -- builtin | llm_judge | script
    output      TEXT    NOT NULL,               -- binary | numeric | score | enum | text
    enum_values TEXT    NOT NULL DEFAULT '[]',
    applies_to  TEXT    NOT NULL DEFAULT 'both', -- production | test | both
    agent_ids   TEXT    NOT NULL DEFAULT '[]',  -- empty: every agent
    description TEXT    NOT NULL DEFAULT '',
    config      TEXT    NOT NULL DEFAULT '{}',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    version     BIGINT  NOT NULL DEFAULT 1,     -- bumped by every change
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    deleted_at  BIGINT                          -- soft delete: old results keep their metric
);
CREATE UNIQUE INDEX metrics_by_name ON metrics(project_id, name) WHERE deleted_at IS NULL;

CREATE TABLE evaluations (
    id             BIGSERIAL PRIMARY KEY,
    project_id     BIGINT  NOT NULL,
    call_id        TEXT    NOT NULL,            -- our call id
    metric_id      BIGINT  NOT NULL,
    metric_name    TEXT    NOT NULL,            -- as it was when evaluated
    metric_version BIGINT  NOT NULL,
    kind           TEXT    NOT NULL,
    output         TEXT    NOT NULL,
    status         TEXT    NOT NULL,            -- ok | not_computable | skipped | error
    value          TEXT,                        -- JSON
    passed         BOOLEAN,
    explanation    TEXT    NOT NULL DEFAULT '',
    details        TEXT    NOT NULL DEFAULT '{}', -- JSON: stats, provenance (model, prompt hash, usage)
    evaluated_at   BIGINT  NOT NULL,
    UNIQUE (call_id, metric_id)
);
CREATE INDEX evaluations_by_metric ON evaluations(project_id, metric_id, evaluated_at);

CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,               -- evaluate_call
    project_id  BIGINT  NOT NULL,
    call_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL,               -- queued | running | done | dead
    attempts    BIGINT  NOT NULL DEFAULT 0,
    run_at      BIGINT  NOT NULL,
    locked_at   BIGINT,
    locked_by   TEXT,
    last_error  TEXT,
    created_at  BIGINT  NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_ready ON jobs(status, run_at, id);
CREATE INDEX jobs_by_call ON jobs(call_id, status);

CREATE TABLE judge_cache (
    key        TEXT    PRIMARY KEY,             -- sha256 of (model, rendered prompt, schema)
    response   TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

ALTER TABLE projects ADD COLUMN rubric TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN judge_base_url TEXT;
ALTER TABLE projects ADD COLUMN judge_model TEXT;
ALTER TABLE projects ADD COLUMN judge_api_key TEXT;
ALTER TABLE projects ADD COLUMN judge_concurrency BIGINT NOT NULL DEFAULT 4;

ALTER TABLE calls ADD COLUMN success BOOLEAN;      -- the rubric's verdict once evaluated
ALTER TABLE calls ADD COLUMN rubric TEXT;          -- JSON breakdown per rule
ALTER TABLE calls ADD COLUMN evaluated_at BIGINT;

ALTER TABLE runs ADD COLUMN success BOOLEAN;
