-- Simulated callers: agents get a connector, scenarios a persona and tool mocks, projects a
-- simulator endpoint; results and runs say who places the call; a simulated run keeps its
-- stop reason, its LLM usage, its conversation while it happens and the lease of the
-- instance playing it. Calls say whether they were spoken or written.

ALTER TABLE agents ADD COLUMN connector TEXT;                 -- JSON, the stored form (secrets included); NULL: none

ALTER TABLE scenarios ADD COLUMN simulation TEXT NOT NULL DEFAULT '{}';  -- JSON: persona, first_message, tool_mocks, unmatched_tool_result, stop_rules
ALTER TABLE scenarios ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;

ALTER TABLE projects ADD COLUMN simulator_base_url TEXT;
ALTER TABLE projects ADD COLUMN simulator_model TEXT;
ALTER TABLE projects ADD COLUMN simulator_api_key TEXT;
ALTER TABLE projects ADD COLUMN simulator_concurrency INTEGER NOT NULL DEFAULT 4;
ALTER TABLE projects ADD COLUMN simulator_token_budget INTEGER NOT NULL DEFAULT 200000;

ALTER TABLE results ADD COLUMN mode TEXT NOT NULL DEFAULT 'external';  -- simulate | external
ALTER TABLE results ADD COLUMN label TEXT;
CREATE INDEX results_by_label ON results(project_id, label, id);

ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'external';     -- simulate | external
ALTER TABLE runs ADD COLUMN stop_reason TEXT;
ALTER TABLE runs ADD COLUMN usage TEXT NOT NULL DEFAULT '{}';          -- JSON: LLM requests and tokens
ALTER TABLE runs ADD COLUMN live_transcript TEXT;                      -- JSON messages, while the conversation runs
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until INTEGER;
CREATE INDEX runs_simulation_queue ON runs(mode, status, id);

ALTER TABLE calls ADD COLUMN channel TEXT NOT NULL DEFAULT 'voice';    -- voice | text
