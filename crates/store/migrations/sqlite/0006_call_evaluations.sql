-- A call's evaluations in one row: an evaluation job writes every metric's result at once, and
-- running it again replaces them all. One row per metric (with two index entries each) was the
-- largest single cost of ingest under load; see docs/performance.md.
CREATE TABLE call_evaluations (
    call_id      TEXT    PRIMARY KEY,       -- our call id
    project_id   INTEGER NOT NULL,
    evaluations  TEXT    NOT NULL,          -- JSON array of evaluations, as the API shows them
    evaluated_at INTEGER NOT NULL
);

INSERT INTO call_evaluations (call_id, project_id, evaluations, evaluated_at)
SELECT call_id, MIN(project_id),
    json_group_array(json_object(
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
        'evaluated_at', strftime('%Y-%m-%dT%H:%M:%S', evaluated_at / 1000, 'unixepoch')
            || printf('.%03dZ', evaluated_at % 1000)
    ) ORDER BY metric_id),
    MAX(evaluated_at)
FROM evaluations
GROUP BY call_id;

DROP TABLE evaluations;
