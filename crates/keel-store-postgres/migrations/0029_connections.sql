-- OAuth2 connections: integrations (an app's client at a provider), the
-- connect sessions of a dance under way (found once, by state), and the
-- connections with their tokens. Every secret column holds text sealed by
-- the engine (AES-256-GCM bound to its row), never a plaintext.
CREATE TABLE keel_integrations (
    namespace     text    NOT NULL,
    name          text    NOT NULL,
    spec          text    NOT NULL,
    client_secret text    NOT NULL,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE keel_connect_sessions (
    state        text    NOT NULL PRIMARY KEY,
    namespace    text    NOT NULL,
    integration  text    NOT NULL,
    connection   text    NOT NULL,
    verifier     text    NOT NULL,
    redirect_url text    NOT NULL,
    return_to    text,
    expires_at   bigint NOT NULL
);

CREATE TABLE keel_connections (
    namespace     text    NOT NULL,
    name          text    NOT NULL,
    integration   text    NOT NULL,
    version       bigint NOT NULL,
    status        text    NOT NULL,
    access_token  text    NOT NULL,
    refresh_token text,
    token_type    text    NOT NULL,
    scope         text,
    expires_at    bigint,
    refresh_at    bigint NOT NULL,
    refreshed_at  bigint NOT NULL,
    error         text,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE INDEX keel_connections_due ON keel_connections (refresh_at) WHERE status = 'active';
CREATE INDEX keel_connections_of_integration ON keel_connections (namespace, integration);
