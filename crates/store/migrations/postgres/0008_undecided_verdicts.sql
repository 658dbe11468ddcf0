-- A rubric that has rules but could check none of them on a call could not decide: its verdict
-- is NULL, not true.
ALTER TABLE call_evaluations ALTER COLUMN success DROP NOT NULL;
