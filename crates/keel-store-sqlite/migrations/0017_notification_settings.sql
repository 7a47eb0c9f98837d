-- Notification settings: channels, templates, recipients and preferences,
-- each a JSON document of its kind under a name (a channel's secrets
-- included: the sender needs them; the API never shows them).
CREATE TABLE notification_settings (
    namespace  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, kind, name)
) WITHOUT ROWID;
