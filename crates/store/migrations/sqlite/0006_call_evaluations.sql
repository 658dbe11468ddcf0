-- A call's evaluation in one row of its own: an evaluation job writes every metric's result
-- and the verdict at once, and running it again replaces them all. One row per metric (with two
-- index entries each), and the verdict written into the call's row (which rewrites the whole
-- row, messages and raw payload included), were the largest costs of ingest under load; see
-- docs/performance.md. A call's row is now written once.
CREATE TABLE call_evaluations (
    call_id      TEXT    PRIMARY KEY,       -- our call id
    project_id   INTEGER NOT NULL,
    success      INTEGER NOT NULL,          -- the rubric's verdict
    rubric       TEXT    NOT NULL,          -- JSON breakdown per rule
    evaluations  TEXT    NOT NULL,          -- JSON array, one object per metric (evaluation_document.rs)
    evaluated_at INTEGER NOT NULL
);

INSERT INTO call_evaluations (call_id, project_id, success, rubric, evaluations, evaluated_at)
SELECT c.id, c.project_id, c.success, c.rubric, COALESCE(e.evaluations, '[]'), c.evaluated_at
FROM calls c
LEFT JOIN (
    SELECT call_id, json_group_array(json_object(
        'metric_id', metric_id,
        'metric_name', metric_name,
        'metric_version', metric_version,
        'kind', kind,
        'output', output,
        'status', status,
        'value', json(value),
        'passed', json(CASE passed WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE 'null' END),
        'explanation', explanation,
        'details', json(details),
        'evaluated_at', evaluated_at
    ) ORDER BY metric_id) AS evaluations
    FROM evaluations
    GROUP BY call_id
) e ON e.call_id = c.id
WHERE c.evaluated_at IS NOT NULL;

DROP TABLE evaluations;
ALTER TABLE calls DROP COLUMN success;
ALTER TABLE calls DROP COLUMN rubric;
ALTER TABLE calls DROP COLUMN evaluated_at;
