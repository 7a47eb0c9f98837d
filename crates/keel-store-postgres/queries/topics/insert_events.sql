-- Appends a batch of events whose seqs the caller took under the topic's lock.
INSERT INTO keel_events (namespace, topic, seq, id, type, source, key, time, data, headers,
                         published_at)
SELECT $1, $2, u.seq, u.id, u.type, u.source, u.key, u.time, u.data, u.headers, $11
FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[],
            $9::text[], $10::text[]) AS u(seq, id, type, source, key, time, data, headers)
