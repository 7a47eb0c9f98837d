INSERT INTO keel_claims (namespace, subscription, seq, key, consumer, cursor, deadline, done)
SELECT $1, $2, u.seq, u.key, $5, $6, $7, false
FROM unnest($3::bigint[], $4::text[]) AS u(seq, key)
