-- Server-wide settings (e.g. the dashboard admin token's hash).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
