-- The transcript as plain text, for searching calls by what was said.
ALTER TABLE calls ADD COLUMN transcript TEXT NOT NULL DEFAULT '';
