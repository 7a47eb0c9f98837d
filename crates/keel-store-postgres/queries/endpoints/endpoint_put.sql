-- Creates an endpoint or changes its spec; the stored secrets stay unless
-- $7 says to set them ($4 is used for a new endpoint either way).
-- updated_at moves only when something changed; `created` is true for a
-- new row (xmax is 0 on an insert).
INSERT INTO keel_endpoints (namespace, name, spec, secrets, health, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (namespace, name) DO UPDATE
SET spec = EXCLUDED.spec,
    secrets = CASE WHEN $7 THEN EXCLUDED.secrets ELSE keel_endpoints.secrets END,
    updated_at = CASE WHEN keel_endpoints.spec = EXCLUDED.spec
                        AND (NOT $7 OR keel_endpoints.secrets = EXCLUDED.secrets)
                      THEN keel_endpoints.updated_at ELSE EXCLUDED.updated_at END
RETURNING namespace, name, spec, secrets, health, created_at, updated_at, (xmax = 0) AS created
