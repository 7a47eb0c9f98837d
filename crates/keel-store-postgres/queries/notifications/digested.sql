-- The notifications folded into a holder's digest on a channel, oldest first.
SELECT n.id, n.recipient, n.category, n.body, n.created_at FROM keel_notifications n
JOIN keel_notification_deliveries d ON d.namespace = n.namespace AND d.notification = n.id
WHERE d.namespace = $1 AND d.duplicate_of = $2 AND d.channel = $3 AND d.status = 'digested'
ORDER BY n.id
LIMIT $4
