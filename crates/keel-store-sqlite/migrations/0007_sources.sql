-- Webhook sources: the spec as JSON, secret included (the verifier needs
-- it; the API never shows it).
CREATE TABLE sources (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
