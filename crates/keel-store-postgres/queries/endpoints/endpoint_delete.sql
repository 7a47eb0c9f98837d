-- An endpoint and its attempts.
WITH gone AS (
    DELETE FROM keel_endpoints WHERE namespace = $1 AND name = $2 RETURNING namespace, name
), attempts AS (
    DELETE FROM keel_endpoint_attempts a USING gone
    WHERE a.namespace = gone.namespace AND a.endpoint = gone.name
)
SELECT count(*) FROM gone
