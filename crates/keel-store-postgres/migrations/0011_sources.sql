-- Webhook sources: the spec as JSON text, secret included (the verifier
-- needs it; the API never shows it).
CREATE TABLE keel_sources (
    namespace  text   NOT NULL,
    name       text   NOT NULL,
    spec       text   NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);
