-- Notifications and their deliveries (one per channel; a delivery's id is
-- its job's), the dedup keys and Idempotency-Keys that hold until they
-- expire, and the in-app inbox, keyed by a sequence per recipient.
CREATE TABLE notifications (
    namespace  TEXT    NOT NULL,
    id         BLOB    NOT NULL,
    recipient  TEXT    NOT NULL,
    category   TEXT,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE INDEX notifications_by_recipient ON notifications (namespace, recipient, id);

CREATE TABLE notification_deliveries (
    namespace    TEXT    NOT NULL,
    id           BLOB    NOT NULL,
    notification BLOB    NOT NULL,
    channel      TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    duplicate_of BLOB,
    fallback_of  BLOB,
    attempts     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE INDEX notification_deliveries_of ON notification_deliveries (namespace, notification, id);
CREATE INDEX notification_deliveries_by_status ON notification_deliveries (namespace, status, notification);
CREATE INDEX notification_deliveries_by_holder ON notification_deliveries (namespace, duplicate_of)
    WHERE duplicate_of IS NOT NULL;

CREATE TABLE notification_dedup (
    namespace    TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    notification BLOB    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, channel, recipient, key)
) WITHOUT ROWID;

CREATE TABLE notification_requests (
    namespace    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    notification BLOB    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TABLE inbox (
    namespace    TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    delivery     BLOB    NOT NULL,
    notification BLOB    NOT NULL,
    category     TEXT,
    content      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    seen_at      INTEGER,
    read_at      INTEGER,
    archived_at  INTEGER,
    PRIMARY KEY (namespace, recipient, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX inbox_by_delivery ON inbox (namespace, delivery);
