UPDATE keel_topics SET head_seq = $3, events = events + $4 WHERE namespace = $1 AND name = $2
