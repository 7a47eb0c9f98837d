//! Notification settings: put (create, change, no change), get, list in
//! pages by kind, delete of several kinds at once, all per namespace.

use serde_json::json;

use super::*;
use crate::Setting;

cases![
    settings_are_put_read_listed_and_deleted_by_kind,
    a_put_that_changes_nothing_keeps_updated_at,
];

async fn settings_are_put_read_listed_and_deleted_by_kind(h: Harness) {
    let s = h.store.clone();
    let email = json!({"email": {"smtp_url": "smtp://h", "from": "a@b"}});
    let (stored, created) = s
        .setting_put(&ns(), Setting::Channel, "mail", &email, T0)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (stored.name.as_str(), &stored.body, stored.created_at),
        ("mail", &email, T0)
    );
    let in_app = json!({"in_app": {}});
    let (changed, created) = s
        .setting_put(&ns(), Setting::Channel, "mail", &in_app, at(5))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((changed.created_at, changed.updated_at), (T0, at(5)));
    for name in ["c", "a", "b"] {
        s.setting_put(&ns(), Setting::Channel, name, &in_app, at(6))
            .await
            .unwrap();
    }
    // The same name as another kind, and in another namespace, is another setting.
    s.setting_put(
        &ns(),
        Setting::Recipient,
        "a",
        &json!({"email": "a@b"}),
        at(6),
    )
    .await
    .unwrap();
    s.setting_put(
        &ns(),
        Setting::Preferences,
        "a",
        &json!({"channels": {"mail": false}}),
        at(6),
    )
    .await
    .unwrap();
    s.setting_put(
        &Namespace::new("other").unwrap(),
        Setting::Channel,
        "z",
        &in_app,
        at(6),
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let got = s
        .setting_get(&ns(), Setting::Channel, "mail")
        .await
        .unwrap();
    assert_eq!(got, Some(changed));
    assert_eq!(
        s.setting_get(&ns(), Setting::Template, "mail")
            .await
            .unwrap(),
        None
    );
    let names = |page: Vec<crate::StoredSetting>| -> Vec<String> {
        page.into_iter().map(|s| s.name).collect()
    };
    let all = s
        .settings_list(&ns(), Setting::Channel, None, 10)
        .await
        .unwrap();
    assert_eq!(names(all), ["a", "b", "c", "mail"]);
    let page = s
        .settings_list(&ns(), Setting::Channel, Some("b"), 1)
        .await
        .unwrap();
    assert_eq!(names(page), ["c"]);
    assert!(
        s.setting_delete(&ns(), &[Setting::Recipient, Setting::Preferences], "a")
            .await
            .unwrap()
    );
    assert_eq!(
        s.setting_get(&ns(), Setting::Recipient, "a").await.unwrap(),
        None
    );
    assert_eq!(
        s.setting_get(&ns(), Setting::Preferences, "a")
            .await
            .unwrap(),
        None
    );
    assert!(
        s.setting_get(&ns(), Setting::Channel, "a")
            .await
            .unwrap()
            .is_some(),
        "another kind of the same name stays"
    );
    assert!(
        !s.setting_delete(&ns(), &[Setting::Recipient], "a")
            .await
            .unwrap(),
        "gone already"
    );
    s.close().await;
}

async fn a_put_that_changes_nothing_keeps_updated_at(h: Harness) {
    let s = h.store.clone();
    let body = json!({"subject": "hi {{ data.name }}"});
    s.setting_put(&ns(), Setting::Template, "t", &body, T0)
        .await
        .unwrap();
    let (same, created) = s
        .setting_put(&ns(), Setting::Template, "t", &body, at(9))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(same.updated_at, T0);
    s.close().await;
}
