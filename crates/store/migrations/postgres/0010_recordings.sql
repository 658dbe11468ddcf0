-- Call recordings: the audio is an object (the data directory or a bucket); this row says
-- where, what it is, and what its analysis found (the speech timeline the audio metrics read,
-- and the waveform's envelope). One recording per call; a new one replaces it.

CREATE TABLE recordings (
    call_id       TEXT    PRIMARY KEY REFERENCES calls(id),
    project_id    BIGINT  NOT NULL REFERENCES projects(id),
    object_key    TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size_bytes    BIGINT  NOT NULL,
    sample_rate   BIGINT  NOT NULL,
    channels      BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL,
    agent_channel BIGINT  NOT NULL,
    origin        TEXT    NOT NULL,   -- simulation | upload
    timeline      TEXT    NOT NULL,   -- JSON: the AudioTimeline
    envelope      TEXT    NOT NULL,   -- JSON: [caller peaks, agent peaks], 0-255 per bucket
    bucket_ms     BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL
);
