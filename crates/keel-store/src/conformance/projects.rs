//! Project versions: a version is written only on top of the one the caller
//! saw, never while another applies, survives a reopen, and settles once.

use keel_core::ProjectName;
use keel_core::project::{Kind, Resource};

use super::*;
use keel_core::project::VersionState;

use crate::{ProjectVersion, VersionBody};

cases![
    a_version_is_written_only_on_the_one_its_plan_saw,
    an_applying_version_survives_a_reopen_and_settles,
];

fn project(name: &str) -> ProjectName {
    ProjectName::new(name).unwrap()
}

fn version(name: &str, n: u64, topic: &str) -> ProjectVersion {
    ProjectVersion {
        project: project(name),
        version: n,
        state: VersionState::Applying,
        body: VersionBody {
            resources: vec![Resource {
                kind: Kind::Topic,
                namespace: ns(),
                name: topic.to_owned(),
                spec: serde_json::json!({}),
            }],
            note: format!("v{n}"),
            ..VersionBody::default()
        },
        created_at: at(n),
        finished_at: None,
    }
}

async fn a_version_is_written_only_on_the_one_its_plan_saw(h: Harness) {
    let s = h.store.clone();
    let e = s.project_begin(&version("shop", 2, "t")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    s.project_begin(&version("shop", 1, "t")).await.unwrap();
    // The first still applies: nothing goes on top of it.
    let e = s.project_begin(&version("shop", 2, "t")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    s.project_settle(&project("shop"), 1, VersionState::Applied, None, at(9))
        .await
        .unwrap();
    // Two applies planned on version 1: one wins.
    s.project_begin(&version("shop", 2, "u")).await.unwrap();
    let e = s.project_begin(&version("shop", 2, "v")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    s.project_settle(
        &project("shop"),
        2,
        VersionState::Failed,
        Some("no".into()),
        at(10),
    )
    .await
    .unwrap();
    s.project_begin(&version("other", 1, "w")).await.unwrap();

    let heads = s.project_heads().await.unwrap();
    let shown: Vec<(&str, u64, VersionState)> = heads
        .iter()
        .map(|v| (v.project.as_str(), v.version, v.state))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("other", 1, VersionState::Applying),
            ("shop", 2, VersionState::Failed)
        ]
    );
    let owners = s.project_owners().await.unwrap();
    let shown: Vec<(&str, u64)> = owners
        .iter()
        .map(|v| (v.project.as_str(), v.version))
        .collect();
    assert_eq!(shown, vec![("shop", 1)]);
    let listed = s.project_versions(&project("shop"), 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(listed[0].body.error.as_deref(), Some("no"));
    assert_eq!(listed[0].finished_at, Some(at(10)));
    let e = s.project_version(&project("shop"), 7).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

async fn an_applying_version_survives_a_reopen_and_settles(h: Harness) {
    let written = version("shop", 1, "t");
    h.store.project_begin(&written).await.unwrap();
    h.store.close().await;
    let s = (h.reopen)().await;
    let found = s.project_version(&project("shop"), 1).await.unwrap();
    assert_eq!(found, written);
    s.project_settle(&project("shop"), 1, VersionState::Applied, None, at(3))
        .await
        .unwrap();
    let e = s
        .project_settle(&project("shop"), 1, VersionState::Failed, None, at(4))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let heads = s.project_heads().await.unwrap();
    assert_eq!(heads[0].state, VersionState::Applied);
}
