-- Notifications newest first, by recipient, and by a delivery's status or
-- channel (the deliveries' index by status picks the few out of many).
SELECT n.id, n.recipient, n.category, n.body, n.created_at FROM keel_notifications n
WHERE n.namespace = $1
  AND ($2::text IS NULL OR n.recipient = $2)
  AND ($3::uuid IS NULL OR n.id < $3)
  AND ($4::text IS NULL AND $5::text IS NULL OR n.id IN (
      SELECT d.notification FROM keel_notification_deliveries d
      WHERE d.namespace = $1
        AND ($4::text IS NULL OR d.status = $4)
        AND ($5::text IS NULL OR d.channel = $5)))
ORDER BY n.id DESC
LIMIT $6
