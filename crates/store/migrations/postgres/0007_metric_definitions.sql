-- Metric definitions stored tagged by kind (store/src/metric_document.rs): the draft's `config`
-- bag {"builtin": KEY, …settings, "pass"} becomes {"kind", the kind's own fields, "pass"}.
-- Keys a kind never read (a judge's or a script's extra keys) are dropped; a non-string
-- template, model or base URL was ignored before and is dropped too. `json`, not `jsonb`, where
-- a string may hold U+0000 (a script's source), which `jsonb` refuses.
UPDATE metrics SET config = json_build_object(
    'kind', 'builtin',
    'key', config::json -> 'builtin',
    'knobs', config::jsonb - 'builtin' - 'pass',
    'pass', config::json -> 'pass')::text
WHERE kind = 'builtin';

UPDATE metrics SET config = json_build_object(
    'kind', 'script',
    'source', config::json -> 'script',
    'pass', config::json -> 'pass')::text
WHERE kind = 'script';

UPDATE metrics SET config = json_build_object(
    'kind', 'llm_judge',
    'template', CASE WHEN json_typeof(config::json -> 'template') = 'string'
        THEN config::json -> 'template' END,
    'model', CASE WHEN json_typeof(config::json -> 'model') = 'string'
        THEN config::json -> 'model' END,
    'base_url', CASE WHEN json_typeof(config::json -> 'base_url') = 'string'
        THEN config::json -> 'base_url' END,
    'pass', config::json -> 'pass')::text
WHERE kind = 'llm_judge';
