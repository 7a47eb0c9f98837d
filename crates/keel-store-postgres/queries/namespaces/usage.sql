-- What a namespace holds: unfinished jobs, schedules, subscriptions, and the
-- bytes of its payloads, results and event data.
SELECT (SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL),
       (SELECT count(*) FROM keel_schedules WHERE namespace = $1),
       (SELECT count(*) FROM keel_subscriptions WHERE namespace = $1),
       (SELECT coalesce(sum(octet_length(payload) + coalesce(octet_length(result), 0)), 0)
        FROM keel_jobs WHERE namespace = $1)
     + (SELECT coalesce(sum(octet_length(data)), 0) FROM keel_events WHERE namespace = $1)
