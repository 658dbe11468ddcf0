-- PII redaction at ingest: each project's policy (core::privacy::RedactionPolicy as JSON, NULL
-- for off) and the key its hash tokens use (hex, made when first needed), and what each call
-- lost to it, by kind (core::redact::Counts as JSON, NULL when nothing).
ALTER TABLE projects ADD COLUMN redaction TEXT;
ALTER TABLE projects ADD COLUMN redaction_key TEXT;
ALTER TABLE calls ADD COLUMN redactions TEXT;
