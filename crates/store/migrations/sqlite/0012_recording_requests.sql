-- Recordings a call's sender says where to fetch (`recording_url`): written with the call, read
-- by its evaluation job, which fetches the recording (or gives up, with a warning on the call)
-- and deletes the row in the write that settles it. A recording's origin may now be `fetched`.
CREATE TABLE recording_requests (
    call_id       TEXT    PRIMARY KEY REFERENCES calls(id),
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    url           TEXT    NOT NULL,
    agent_channel INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
