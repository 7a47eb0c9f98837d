-- Handlers' immutable versions (the current one is the highest), their
-- secrets, and objects' state: one row per key, with the object's running
-- size and version counter in `objects` (versions are never reused).
CREATE TABLE handlers (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    secrets    TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE handler_versions (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    source     TEXT,
    artifact   BLOB    NOT NULL,
    settings   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE objects (
    namespace TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    bytes     INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (namespace, type, key)
) WITHOUT ROWID;

CREATE TABLE object_state (
    namespace  TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, type, object, key)
) WITHOUT ROWID;
