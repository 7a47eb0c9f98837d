SELECT body FROM keel_incidents
WHERE namespace = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR monitor = $3)
  AND ($4::uuid IS NULL OR id < $4)
ORDER BY id DESC LIMIT $5
