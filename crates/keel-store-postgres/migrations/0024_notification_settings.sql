-- Notification settings: channels, templates, recipients and preferences,
-- each a JSON document (as text) of its kind under a name (a channel's
-- secrets included: the sender needs them; the API never shows them).
CREATE TABLE keel_notification_settings (
    namespace  text   NOT NULL,
    kind       text   NOT NULL,
    name       text   NOT NULL,
    body       text   NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, kind, name)
);
