-- The theoretical arrival time of a namespace's enqueue or publish rate
-- ($2: 'enqueue' or 'publish'), its row locked until the transaction ends.
SELECT CASE WHEN $2 = 'enqueue' THEN enqueue_tat ELSE publish_tat END
FROM keel_namespaces WHERE namespace = $1 FOR UPDATE
