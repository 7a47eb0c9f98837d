-- Makes the handler's row if it is new (version 0 until the put sets it);
-- `handler_row_lock` then locks it: puts of one handler take turns.
INSERT INTO keel_handlers (namespace, name, version, created_at, updated_at)
VALUES ($1, $2, 0, $3, $3)
ON CONFLICT DO NOTHING
