//! Workflow definitions and their versions.

use super::*;

cases![
    workflow_versions_change_only_with_content,
    workflows_are_listed_by_name_at_their_latest_version,
];

async fn workflow_versions_change_only_with_content(h: Harness) {
    let s = &*h.store;
    let missing = s.workflow_get(&ns(), "flow", None).await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    assert_eq!(
        s.workflow_put(&ns(), "flow", r#"{"v":1}"#, T0)
            .await
            .unwrap(),
        (1, true)
    );
    assert_eq!(
        s.workflow_put(&ns(), "flow", r#"{"v":1}"#, at(1))
            .await
            .unwrap(),
        (1, false)
    );
    assert_eq!(
        s.workflow_put(&ns(), "flow", r#"{"v":2}"#, at(2))
            .await
            .unwrap(),
        (2, true)
    );
    // Going back to old content is a change too: a new version.
    assert_eq!(
        s.workflow_put(&ns(), "flow", r#"{"v":1}"#, at(3))
            .await
            .unwrap(),
        (3, true)
    );
    let latest = s.workflow_get(&ns(), "flow", None).await.unwrap();
    assert_eq!(
        (latest.version, latest.definition.as_str()),
        (3, r#"{"v":1}"#)
    );
    let second = s.workflow_get(&ns(), "flow", Some(2)).await.unwrap();
    assert_eq!(
        (second.definition.as_str(), second.created_at),
        (r#"{"v":2}"#, at(2))
    );
    let versions = s.workflow_versions(&ns(), "flow").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        s.workflow_get(&ns(), "flow", Some(9))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let other = Namespace::new("other").unwrap();
    assert_eq!(
        s.workflow_put(&other, "flow", r#"{"v":2}"#, T0)
            .await
            .unwrap(),
        (1, true)
    );
}

async fn workflows_are_listed_by_name_at_their_latest_version(h: Harness) {
    let s = &*h.store;
    assert!(s.workflows_list(&ns()).await.unwrap().is_empty());
    for (name, body, t) in [("b", "1", 0), ("a", "1", 1), ("b", "2", 2), ("b", "3", 3)] {
        s.workflow_put(&ns(), name, body, at(t)).await.unwrap();
    }
    s.workflow_put(&Namespace::new("other").unwrap(), "c", "1", T0)
        .await
        .unwrap();
    let listed = s.workflows_list(&ns()).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|w| (
                w.name.as_str(),
                w.version,
                w.definition.as_str(),
                w.created_at
            ))
            .collect::<Vec<_>>(),
        [("a", 1, "1", at(1)), ("b", 3, "3", at(3))]
    );
}
