-- Namespaces with quotas: the quotas as JSON text, and the rate quotas'
-- states (theoretical arrival times in microseconds, NULL: none yet), one
-- row that every node's enqueues and publishes in the namespace update.
CREATE TABLE keel_namespaces (
    namespace   text   NOT NULL PRIMARY KEY,
    quotas      text   NOT NULL,
    updated_at  bigint NOT NULL,
    enqueue_tat bigint,
    publish_tat bigint
);
