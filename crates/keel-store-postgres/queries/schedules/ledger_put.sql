-- A slot's fate: a buffered slot that fires later replaces its row.
INSERT INTO keel_schedule_ledger (namespace, schedule, nominal, seq, outcome, fired_at, target_id)
SELECT $1, $2, n, s, o, f, t
FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::text[]) AS x(n, s, o, f, t)
ON CONFLICT (namespace, schedule, nominal) DO UPDATE
SET seq = EXCLUDED.seq, outcome = EXCLUDED.outcome,
    fired_at = EXCLUDED.fired_at, target_id = EXCLUDED.target_id
