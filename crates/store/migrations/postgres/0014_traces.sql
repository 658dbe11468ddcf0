-- OpenTelemetry spans, kept per project and found by trace id. A call is linked to its trace
-- by its own trace_id, compared in lowercase (OTLP ids are hex), whichever arrives first.
CREATE TABLE spans (
    project_id     BIGINT  NOT NULL REFERENCES projects(id),
    trace_id       TEXT    NOT NULL,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    name           TEXT    NOT NULL,
    service_name   TEXT,
    start_ns       BIGINT  NOT NULL,
    end_ns         BIGINT  NOT NULL,
    status         TEXT    NOT NULL,
    status_message TEXT,
    attributes     TEXT    NOT NULL,
    events         TEXT    NOT NULL,
    delivery_id    BIGINT  NOT NULL,
    received_at    BIGINT  NOT NULL,
    PRIMARY KEY (project_id, trace_id, span_id)
);

CREATE INDEX calls_by_trace ON calls (project_id, lower(trace_id)) WHERE trace_id IS NOT NULL;
