SELECT body FROM keel_incidents WHERE namespace = $1 AND dedup_key = $2 AND status <> 'resolved'
