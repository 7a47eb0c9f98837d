-- Subscriptions: the spec (filter and target as JSON), where they stand.
CREATE TABLE subscriptions (
    namespace           TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    id                  TEXT    NOT NULL,
    topic               TEXT    NOT NULL,
    filter              TEXT    NOT NULL,
    target              TEXT,
    consumer_timeout_ms INTEGER NOT NULL,
    paused              INTEGER NOT NULL,
    position            INTEGER NOT NULL,
    delivered           INTEGER NOT NULL,
    skipped             INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE INDEX subscriptions_by_topic ON subscriptions (namespace, topic);

-- Events a pulled subscription handed to a consumer and not yet passed:
-- in flight until `deadline`, or `done` (committed ahead of the position).
CREATE TABLE claims (
    namespace    TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    key          TEXT,
    consumer     TEXT    NOT NULL,
    cursor       TEXT    NOT NULL,
    deadline     INTEGER NOT NULL,
    done         INTEGER NOT NULL,
    PRIMARY KEY (namespace, subscription, seq)
) WITHOUT ROWID;
CREATE INDEX claims_by_cursor ON claims (namespace, subscription, cursor);
