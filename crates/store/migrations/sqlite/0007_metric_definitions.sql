-- Metric definitions stored tagged by kind (store/src/metric_document.rs): the draft's `config`
-- bag {"builtin": KEY, …settings, "pass"} becomes {"kind", the kind's own fields, "pass"}.
-- Keys a kind never read (a judge's or a script's extra keys) are dropped; a non-string
-- template, model or base URL was ignored before and is dropped too.
UPDATE metrics SET config = json_object(
    'kind', 'builtin',
    'key', json_extract(config, '$.builtin'),
    'knobs', json(json_remove(config, '$.builtin', '$.pass')),
    'pass', json(json_extract(config, '$.pass')))
WHERE kind = 'builtin';

UPDATE metrics SET config = json_object(
    'kind', 'script',
    'source', json_extract(config, '$.script'),
    'pass', json(json_extract(config, '$.pass')))
WHERE kind = 'script';

UPDATE metrics SET config = json_object(
    'kind', 'llm_judge',
    'template', CASE WHEN json_type(config, '$.template') = 'text'
        THEN json_extract(config, '$.template') END,
    'model', CASE WHEN json_type(config, '$.model') = 'text'
        THEN json_extract(config, '$.model') END,
    'base_url', CASE WHEN json_type(config, '$.base_url') = 'text'
        THEN json_extract(config, '$.base_url') END,
    'pass', json(json_extract(config, '$.pass')))
WHERE kind = 'llm_judge';
