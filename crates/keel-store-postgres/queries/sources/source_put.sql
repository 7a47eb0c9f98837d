-- Creates a source or replaces its spec; updated_at moves only when the
-- spec changed. `created` is true for a new row (xmax is 0 on an insert).
INSERT INTO keel_sources (namespace, name, spec, created_at, updated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (namespace, name) DO UPDATE
SET spec = EXCLUDED.spec,
    updated_at = CASE WHEN keel_sources.spec = EXCLUDED.spec
                      THEN keel_sources.updated_at ELSE EXCLUDED.updated_at END
RETURNING namespace, name, spec, created_at, updated_at, (xmax = 0) AS created
