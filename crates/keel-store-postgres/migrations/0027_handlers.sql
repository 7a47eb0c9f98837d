-- Handlers' immutable versions (the current one is `keel_handlers.version`),
-- their secrets, and objects' state: one row per key, with the object's
-- running size and version counter in `keel_objects` (locked by every
-- write to the object; versions are never reused).
CREATE TABLE keel_handlers (
    namespace  text    NOT NULL,
    name       text    NOT NULL,
    version    integer NOT NULL,
    secrets    text    NOT NULL DEFAULT '{}',
    created_at bigint  NOT NULL,
    updated_at bigint  NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE keel_handler_versions (
    namespace  text    NOT NULL,
    name       text    NOT NULL,
    version    integer NOT NULL,
    kind       text    NOT NULL,
    hash       text    NOT NULL,
    source     text,
    artifact   bytea   NOT NULL,
    settings   text    NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE keel_objects (
    namespace text   NOT NULL,
    type      text   NOT NULL,
    key       text   NOT NULL,
    bytes     bigint NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (namespace, type, key)
);

CREATE TABLE keel_object_state (
    namespace  text   NOT NULL,
    type       text   NOT NULL,
    object     text   NOT NULL,
    key        text   COLLATE "C" NOT NULL,
    value      text   NOT NULL,
    version    bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, type, object, key)
);
