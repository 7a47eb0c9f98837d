-- The audit log: appended before each change an operator or admin makes,
-- settled with its outcome (the answer's status) after it.
CREATE TABLE keel_audit (
    id         bigserial PRIMARY KEY,
    at         bigint NOT NULL,
    token_id   text,
    actor_name text   NOT NULL,
    role       text,
    namespace  text,
    action     text   NOT NULL,
    target     text   NOT NULL,
    request_id text   NOT NULL,
    summary    text   NOT NULL,
    outcome    integer
);
CREATE INDEX keel_audit_by_namespace ON keel_audit (namespace, id);
CREATE INDEX keel_audit_by_time ON keel_audit (at);
