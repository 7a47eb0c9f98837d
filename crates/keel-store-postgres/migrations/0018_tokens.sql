-- API tokens: the SHA-256 of each secret, never the secret; namespaces and
-- resources as JSON text arrays (resources NULL: every resource).
CREATE TABLE keel_tokens (
    id           text   NOT NULL PRIMARY KEY,
    name         text   NOT NULL,
    role         text   NOT NULL,
    namespaces   text   NOT NULL,
    resources    text,
    secret_hash  bytea  NOT NULL,
    created_at   bigint NOT NULL,
    expires_at   bigint,
    last_used_at bigint,
    revoked_at   bigint
);
