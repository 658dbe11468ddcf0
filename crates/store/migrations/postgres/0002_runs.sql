-- Scenarios, results (batches of test runs) and runs; calls learn which run they matched.

ALTER TABLE projects ADD COLUMN listening_window_seconds BIGINT NOT NULL DEFAULT 300;
ALTER TABLE projects ADD COLUMN run_deadline_seconds BIGINT NOT NULL DEFAULT 1800;

CREATE TABLE scenarios (
    id                      BIGSERIAL PRIMARY KEY,
    project_id              BIGINT  NOT NULL REFERENCES projects(id),
    agent_id                BIGINT  NOT NULL REFERENCES agents(id),
    name                    TEXT    NOT NULL,
    instructions            TEXT    NOT NULL,
    expected_outcome_prompt TEXT    NOT NULL,
    direction               TEXT    NOT NULL,  -- inbound | outbound
    tester_phone_number     TEXT,
    created_at              BIGINT  NOT NULL
);
CREATE INDEX scenarios_by_agent ON scenarios(project_id, agent_id, id);

CREATE TABLE scenario_tags (
    scenario_id BIGINT  NOT NULL REFERENCES scenarios(id),
    tag         TEXT    NOT NULL,
    PRIMARY KEY (scenario_id, tag)
);
CREATE INDEX scenario_tags_by_tag ON scenario_tags(tag, scenario_id);

CREATE TABLE results (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT  NOT NULL REFERENCES projects(id),
    agent_id   BIGINT  NOT NULL REFERENCES agents(id),
    name       TEXT,
    created_at BIGINT  NOT NULL
);

CREATE TABLE runs (
    id                  BIGSERIAL PRIMARY KEY,
    project_id          BIGINT  NOT NULL REFERENCES projects(id),
    result_id           BIGINT  NOT NULL REFERENCES results(id),
    scenario_id         BIGINT  NOT NULL REFERENCES scenarios(id),
    agent_id            BIGINT  NOT NULL REFERENCES agents(id),
    direction           TEXT    NOT NULL,
    tester_phone_number TEXT,
    agent_phone_number  TEXT,
    status              TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    deadline_at         BIGINT  NOT NULL,
    call_started_at     BIGINT,             -- as the harness reported it
    call_ended_at       BIGINT,             -- as the harness reported it
    call_id             TEXT,               -- the attached call (our id)
    matched_by          TEXT,               -- run_id | phone_number | manual
    late                BOOLEAN NOT NULL DEFAULT FALSE,
    error_message       TEXT,
    finished_at         BIGINT
);
-- A call is attached to at most one run; with several instances this is the last line of defence
-- behind the row locks that matching takes.
CREATE UNIQUE INDEX runs_by_call ON runs(call_id) WHERE call_id IS NOT NULL;
CREATE INDEX runs_for_matching ON runs(agent_id, tester_phone_number, status);
CREATE INDEX runs_by_result ON runs(result_id, id);
CREATE INDEX runs_by_status ON runs(status, deadline_at);
CREATE INDEX runs_by_project ON runs(project_id, id DESC);

-- calls.run_id now holds the run the call is attached to (the sender's run_id stays in raw).
ALTER TABLE calls ADD COLUMN match_outcome TEXT NOT NULL DEFAULT 'unmatched';
ALTER TABLE calls ADD COLUMN matched_by TEXT;
ALTER TABLE calls ADD COLUMN match_reason TEXT;
ALTER TABLE calls ADD COLUMN match_candidates TEXT NOT NULL DEFAULT '[]';
