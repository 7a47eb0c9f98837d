SELECT state, count(*) FROM keel_jobs WHERE namespace = $1 AND queue = $2 GROUP BY state
