-- Serializes new versions of one workflow across nodes, until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))
