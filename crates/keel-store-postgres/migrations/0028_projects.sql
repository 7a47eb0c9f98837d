-- Projects' versions: one row each, written whole (state 'applying') before
-- the apply changes anything; the body holds the definitions, the changes
-- and what the changed resources were before.
CREATE TABLE keel_project_versions (
    project     text   NOT NULL,
    version     bigint NOT NULL,
    state       text   NOT NULL,
    body        text   NOT NULL,
    created_at  bigint NOT NULL,
    finished_at bigint,
    PRIMARY KEY (project, version)
);
