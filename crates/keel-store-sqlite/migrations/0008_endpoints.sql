-- Endpoints Keel pushes to: the spec, the signing secrets (signing needs
-- them; the API shows a secret only when it is made) and the health, each
-- as JSON.
CREATE TABLE endpoints (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    secrets    TEXT    NOT NULL,
    health     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

-- Every delivery attempt, newest last; pruned by age.
CREATE TABLE endpoint_attempts (
    id               INTEGER PRIMARY KEY,
    namespace        TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    message_id       TEXT    NOT NULL,
    job_id           BLOB    NOT NULL,
    at               INTEGER NOT NULL,
    succeeded        INTEGER NOT NULL,
    http_status      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT,
    error            TEXT
);
CREATE INDEX endpoint_attempts_by_endpoint ON endpoint_attempts (namespace, endpoint, id);
CREATE INDEX endpoint_attempts_by_age ON endpoint_attempts (at);
