-- API tokens: the SHA-256 of each secret, never the secret; namespaces and
-- resources as JSON arrays (resources NULL: every resource).
CREATE TABLE tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    namespaces   TEXT    NOT NULL,
    resources    TEXT,
    secret_hash  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
) WITHOUT ROWID;
