-- A rubric that has rules but could check none of them on a call could not decide: its verdict
-- is NULL, not true. SQLite cannot drop a NOT NULL in place, so the table is rebuilt.
CREATE TABLE call_evaluations_next (
    call_id      TEXT    PRIMARY KEY,       -- our call id
    project_id   INTEGER NOT NULL,
    success      INTEGER,                   -- the rubric's verdict; NULL when it could not decide
    rubric       TEXT    NOT NULL,          -- JSON breakdown per rule
    evaluations  TEXT    NOT NULL,          -- JSON array, one object per metric (evaluation_document.rs)
    evaluated_at INTEGER NOT NULL
);
INSERT INTO call_evaluations_next SELECT call_id, project_id, success, rubric, evaluations, evaluated_at
FROM call_evaluations;
DROP TABLE call_evaluations;
ALTER TABLE call_evaluations_next RENAME TO call_evaluations;
