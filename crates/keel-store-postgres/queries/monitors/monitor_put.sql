-- Creates a monitor or replaces its spec, keeping its counters and token;
-- updated_at moves only when the spec changed. `created` is true for a new
-- row (xmax is 0 on an insert).
INSERT INTO keel_monitors (namespace, name, spec, token, state, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (namespace, name) DO UPDATE
SET spec = EXCLUDED.spec,
    updated_at = CASE WHEN keel_monitors.spec = EXCLUDED.spec
                      THEN keel_monitors.updated_at ELSE EXCLUDED.updated_at END
RETURNING name, spec, token, state, incident, created_at, updated_at, (xmax = 0) AS created
