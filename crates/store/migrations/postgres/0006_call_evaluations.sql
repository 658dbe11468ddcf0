-- A call's evaluations in one row: an evaluation job writes every metric's result at once, and
-- running it again replaces them all. One row per metric (with two index entries each) was the
-- largest single cost of ingest under load; see docs/performance.md.
CREATE TABLE call_evaluations (
    call_id      TEXT   PRIMARY KEY,        -- our call id
    project_id   BIGINT NOT NULL,
    evaluations  TEXT   NOT NULL,           -- JSON array of evaluations, as the API shows them
    evaluated_at BIGINT NOT NULL
);

INSERT INTO call_evaluations (call_id, project_id, evaluations, evaluated_at)
SELECT call_id, MIN(project_id),
    json_agg(json_build_object(
        'metric_id', metric_id,
        'metric_name', metric_name,
        'metric_version', metric_version,
        'kind', kind,
        'output', output,
        'status', status,
        'value', value::json,
        'passed', passed,
        'explanation', explanation,
        'details', details::json,
        'evaluated_at', to_char(TIMESTAMP 'epoch' + evaluated_at * INTERVAL '1 millisecond',
            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    ) ORDER BY metric_id)::text,
    MAX(evaluated_at)
FROM evaluations
GROUP BY call_id;

DROP TABLE evaluations;
