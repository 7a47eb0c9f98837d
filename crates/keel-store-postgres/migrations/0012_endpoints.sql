-- Endpoints Keel pushes to: the spec, the signing secrets (signing needs
-- them; the API shows a secret only when it is made) and the health, each
-- as JSON text.
CREATE TABLE keel_endpoints (
    namespace  text   NOT NULL,
    name       text   NOT NULL,
    spec       text   NOT NULL,
    secrets    text   NOT NULL,
    health     text   NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- Every delivery attempt; pruned by age.
CREATE TABLE keel_endpoint_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace        text    NOT NULL,
    endpoint         text    NOT NULL,
    message_id       text    NOT NULL,
    job_id           uuid    NOT NULL,
    at               bigint  NOT NULL,
    succeeded        boolean NOT NULL,
    http_status      integer,
    latency_ms       bigint  NOT NULL,
    response_excerpt text,
    error            text
);
CREATE INDEX keel_endpoint_attempts_by_endpoint ON keel_endpoint_attempts (namespace, endpoint, id);
CREATE INDEX keel_endpoint_attempts_by_age ON keel_endpoint_attempts (at);
