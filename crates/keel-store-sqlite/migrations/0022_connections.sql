-- OAuth2 connections: integrations (an app's client at a provider), the
-- connect sessions of a dance under way (found once, by state), and the
-- connections with their tokens. Every secret column holds text sealed by
-- the engine (AES-256-GCM bound to its row), never a plaintext.
CREATE TABLE integrations (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    spec          TEXT    NOT NULL,
    client_secret TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE connect_sessions (
    state        TEXT    NOT NULL PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    integration  TEXT    NOT NULL,
    connection   TEXT    NOT NULL,
    verifier     TEXT    NOT NULL,
    redirect_url TEXT    NOT NULL,
    return_to    TEXT,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE connections (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    integration   TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    access_token  TEXT    NOT NULL,
    refresh_token TEXT,
    token_type    TEXT    NOT NULL,
    scope         TEXT,
    expires_at    INTEGER,
    refresh_at    INTEGER NOT NULL,
    refreshed_at  INTEGER NOT NULL,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE INDEX connections_due ON connections (refresh_at) WHERE status = 'active';
CREATE INDEX connections_of_integration ON connections (namespace, integration);
