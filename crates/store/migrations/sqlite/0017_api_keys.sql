-- Several named keys per project, each with its scopes (core::access::Scopes bits), an optional
-- expiry, when it was last used, and revocation. A project's one key becomes its key "default"
-- with every scope; the key columns leave `projects`.
--
-- SQLite cannot drop a UNIQUE column, so `projects` is rebuilt, inside the migration's
-- transaction where foreign keys cannot be switched off: with the checks deferred, dropping the
-- table leaves every row that references a project counted as a violation, and putting each
-- project back (same id) settles its rows again, so the commit finds none outstanding.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects(id),
    name         TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,   -- sha256 of the key, hex
    key_prefix   TEXT    NOT NULL,          -- first characters of the key, for recognising it
    scopes       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,                   -- set by the key's creator, or by a rotation's overlap
    last_used_at INTEGER,                   -- kept to the minute: a write per request would cost
    revoked_at   INTEGER
);
CREATE INDEX api_keys_by_project ON api_keys(project_id, id);

INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes, created_at)
    SELECT id, 'default', key_hash, key_prefix, 15, COALESCE(key_rotated_at, created_at)
    FROM projects;

CREATE TABLE projects_before AS SELECT * FROM projects;
DROP TABLE projects;
CREATE TABLE projects (
    id                       INTEGER PRIMARY KEY,
    name                     TEXT    NOT NULL UNIQUE,
    created_at               INTEGER NOT NULL,
    listening_window_seconds INTEGER NOT NULL DEFAULT 300,
    run_deadline_seconds     INTEGER NOT NULL DEFAULT 1800,
    rubric                   TEXT    NOT NULL DEFAULT '[]',
    judge_base_url           TEXT,
    judge_model              TEXT,
    judge_api_key            TEXT,
    judge_concurrency        INTEGER NOT NULL DEFAULT 4,
    simulator_base_url       TEXT,
    simulator_model          TEXT,
    simulator_api_key        TEXT,
    simulator_concurrency    INTEGER NOT NULL DEFAULT 4,
    simulator_token_budget   INTEGER NOT NULL DEFAULT 200000,
    simulator_tts_base_url   TEXT,
    simulator_tts_model      TEXT,
    simulator_voice          TEXT,
    simulator_tts_api_key    TEXT,
    simulator_stt_base_url   TEXT,
    simulator_stt_model      TEXT,
    simulator_stt_api_key    TEXT
);
INSERT INTO projects
    SELECT id, name, created_at, listening_window_seconds, run_deadline_seconds, rubric,
        judge_base_url, judge_model, judge_api_key, judge_concurrency, simulator_base_url,
        simulator_model, simulator_api_key, simulator_concurrency, simulator_token_budget,
        simulator_tts_base_url, simulator_tts_model, simulator_voice, simulator_tts_api_key,
        simulator_stt_base_url, simulator_stt_model, simulator_stt_api_key
    FROM projects_before;
DROP TABLE projects_before;
