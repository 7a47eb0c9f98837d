-- Makes the object's row if it is new; `object_row_lock` then locks it:
-- writes to one object take turns.
INSERT INTO keel_objects (namespace, type, key, bytes, seq)
VALUES ($1, $2, $3, 0, 0)
ON CONFLICT DO NOTHING
