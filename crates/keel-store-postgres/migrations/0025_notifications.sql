-- Notifications and their deliveries (one per channel; a delivery's id is
-- its job's), the dedup keys and Idempotency-Keys that hold until they
-- expire, and the in-app inbox, keyed by a sequence per recipient.
CREATE TABLE keel_notifications (
    namespace  text   NOT NULL,
    id         uuid   NOT NULL,
    recipient  text   NOT NULL,
    category   text,
    body       text   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE INDEX keel_notifications_by_recipient ON keel_notifications (namespace, recipient, id);

CREATE TABLE keel_notification_deliveries (
    namespace    text   NOT NULL,
    id           uuid   NOT NULL,
    notification uuid   NOT NULL,
    channel      text   NOT NULL,
    recipient    text   NOT NULL,
    status       text   NOT NULL,
    duplicate_of uuid,
    fallback_of  uuid,
    attempts     text   NOT NULL,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE INDEX keel_notification_deliveries_of ON keel_notification_deliveries (namespace, notification, id);
CREATE INDEX keel_notification_deliveries_by_status ON keel_notification_deliveries (namespace, status, notification);
CREATE INDEX keel_notification_deliveries_by_holder ON keel_notification_deliveries (namespace, duplicate_of)
    WHERE duplicate_of IS NOT NULL;

CREATE TABLE keel_notification_dedup (
    namespace    text   NOT NULL,
    channel      text   NOT NULL,
    recipient    text   NOT NULL,
    key          text   NOT NULL,
    notification uuid   NOT NULL,
    expires_at   bigint NOT NULL,
    PRIMARY KEY (namespace, channel, recipient, key)
);

CREATE TABLE keel_notification_requests (
    namespace    text   NOT NULL,
    key          text   NOT NULL,
    digest       text   NOT NULL,
    notification uuid   NOT NULL,
    expires_at   bigint NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE keel_inbox (
    namespace    text   NOT NULL,
    recipient    text   NOT NULL,
    seq          bigint NOT NULL,
    delivery     uuid   NOT NULL,
    notification uuid   NOT NULL,
    category     text,
    content      text   NOT NULL,
    created_at   bigint NOT NULL,
    seen_at      bigint,
    read_at      bigint,
    archived_at  bigint,
    PRIMARY KEY (namespace, recipient, seq)
);
CREATE UNIQUE INDEX keel_inbox_by_delivery ON keel_inbox (namespace, delivery);
