-- Stores the theoretical arrival time of one of a namespace's rates ($3:
-- 'enqueue' or 'publish').
UPDATE keel_namespaces
SET enqueue_tat = CASE WHEN $3 = 'enqueue' THEN $2 ELSE enqueue_tat END,
    publish_tat = CASE WHEN $3 = 'publish' THEN $2 ELSE publish_tat END
WHERE namespace = $1
