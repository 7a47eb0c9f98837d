-- Subscriptions: the spec (filter and target as JSON text), where they stand.
-- Fetches, commits, seeks and hand-offs lock the row, so that one
-- subscription's changes happen one at a time across nodes.
CREATE TABLE keel_subscriptions (
    namespace           text    NOT NULL,
    name                text    NOT NULL,
    id                  text    NOT NULL,
    topic               text    NOT NULL,
    filter              text    NOT NULL,
    target              text,
    consumer_timeout_ms bigint  NOT NULL,
    paused              boolean NOT NULL,
    position            bigint  NOT NULL,
    delivered           bigint  NOT NULL,
    skipped             bigint  NOT NULL,
    created_at          bigint  NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX keel_subscriptions_by_topic ON keel_subscriptions (namespace, topic);

-- Events a pulled subscription handed to a consumer and not yet passed:
-- in flight until `deadline`, or `done` (committed ahead of the position).
CREATE TABLE keel_claims (
    namespace    text    NOT NULL,
    subscription text    NOT NULL,
    seq          bigint  NOT NULL,
    key          text,
    consumer     text    NOT NULL,
    cursor       text    NOT NULL,
    deadline     bigint  NOT NULL,
    done         boolean NOT NULL,
    PRIMARY KEY (namespace, subscription, seq)
);
CREATE INDEX keel_claims_by_cursor ON keel_claims (namespace, subscription, cursor);
