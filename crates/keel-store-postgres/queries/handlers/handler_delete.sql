WITH gone AS (
    DELETE FROM keel_handlers WHERE namespace = $1 AND name = $2 RETURNING 1
), versions AS (
    DELETE FROM keel_handler_versions WHERE namespace = $1 AND name = $2
)
SELECT count(*) FROM gone
