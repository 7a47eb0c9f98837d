//! Webhook sources: put (create, change, no change), get, list, delete.

use keel_core::source::SourceSpec;

use super::*;
use crate::source_not_found;

cases![
    sources_are_put_read_listed_and_deleted,
    a_put_that_changes_nothing_keeps_updated_at,
];

fn spec(topic: &str, secret: &str) -> SourceSpec {
    serde_json::from_value(serde_json::json!({
        "topic": topic,
        "verify": {"scheme": "github", "secret": secret},
        "key": "request.body.repository.id",
    }))
    .unwrap()
}

async fn sources_are_put_read_listed_and_deleted(h: Harness) {
    let s = h.store.clone();
    let (source, created) = s
        .source_put(&ns(), "github", &spec("gh", "s1"), T0)
        .await
        .unwrap();
    assert!(created);
    assert_eq!((source.name.as_str(), source.created_at), ("github", T0));
    assert_eq!(source.spec, spec("gh", "s1"));
    let (changed, created) = s
        .source_put(&ns(), "github", &spec("gh", "s2"), at(5))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((changed.created_at, changed.updated_at), (T0, at(5)));
    assert_eq!(changed.spec.verify.secret, "s2");
    s.source_put(&ns(), "another", &spec("other", "s3"), at(6))
        .await
        .unwrap();
    s.source_put(
        &Namespace::new("other").unwrap(),
        "github",
        &spec("x", "s4"),
        at(6),
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let got = s.source_get(&ns(), "github").await.unwrap();
    assert_eq!(got, changed);
    let names: Vec<String> = s
        .sources_list(&ns())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["another", "github"]);
    s.source_delete(&ns(), "github").await.unwrap();
    assert_eq!(
        s.source_get(&ns(), "github").await.unwrap_err(),
        source_not_found("github")
    );
    assert_eq!(
        s.source_delete(&ns(), "github").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        s.sources_list(&Namespace::new("other").unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_put_that_changes_nothing_keeps_updated_at(h: Harness) {
    let s = &*h.store;
    s.source_put(&ns(), "hooks", &spec("t", "s"), T0)
        .await
        .unwrap();
    let (again, created) = s
        .source_put(&ns(), "hooks", &spec("t", "s"), at(9))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.updated_at, T0);
}
