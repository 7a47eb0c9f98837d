-- Adds a node's tally to a subject's minute (histograms bucket by bucket).
INSERT INTO keel_slo_minutes
    (namespace, kind, name, minute, waits, slow, succeeded, failed, histogram)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (namespace, kind, name, minute) DO UPDATE SET
    waits = keel_slo_minutes.waits + excluded.waits,
    slow = keel_slo_minutes.slow + excluded.slow,
    succeeded = keel_slo_minutes.succeeded + excluded.succeeded,
    failed = keel_slo_minutes.failed + excluded.failed,
    histogram = ARRAY(SELECT a + b FROM unnest(keel_slo_minutes.histogram,
                      excluded.histogram) WITH ORDINALITY AS t(a, b, i) ORDER BY i)
