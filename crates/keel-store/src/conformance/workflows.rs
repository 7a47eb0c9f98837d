//! Workflow definitions and their versions.

use super::*;

cases![workflow_versions_change_only_with_content,];

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
