-- Projects' versions: one row each, written whole (state 'applying') before
-- the apply changes anything; the body holds the definitions, the changes
-- and what the changed resources were before.
CREATE TABLE project_versions (
    project     TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (project, version)
) WITHOUT ROWID;
