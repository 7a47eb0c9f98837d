-- The audit log: appended before each change an operator or admin makes,
-- settled with its outcome (the answer's status) after it.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    token_id   TEXT,
    actor_name TEXT    NOT NULL,
    role       TEXT,
    namespace  TEXT,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    outcome    INTEGER
);
CREATE INDEX audit_by_namespace ON audit (namespace, id);
CREATE INDEX audit_by_time ON audit (at);
