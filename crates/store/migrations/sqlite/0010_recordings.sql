-- Call recordings: the audio is an object (the data directory or a bucket); this row says
-- where, what it is, and what its analysis found (the speech timeline the audio metrics read,
-- and the waveform's envelope). One recording per call; a new one replaces it.

CREATE TABLE recordings (
    call_id       TEXT    PRIMARY KEY REFERENCES calls(id),
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    object_key    TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sample_rate   INTEGER NOT NULL,
    channels      INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    agent_channel INTEGER NOT NULL,
    origin        TEXT    NOT NULL,   -- simulation | upload
    timeline      TEXT    NOT NULL,   -- JSON: the AudioTimeline
    envelope      TEXT    NOT NULL,   -- JSON: [caller peaks, agent peaks], 0-255 per bucket
    bucket_ms     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
