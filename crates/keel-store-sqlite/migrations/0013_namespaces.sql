-- Namespaces with quotas: the quotas as JSON. A namespace without a row
-- has none (max_jobs: the server's --max-namespace-jobs).
CREATE TABLE namespaces (
    namespace  TEXT    NOT NULL PRIMARY KEY,
    quotas     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
