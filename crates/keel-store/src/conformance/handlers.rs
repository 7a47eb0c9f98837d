//! Handlers and per-entity state: versions (immutable, unchanged uploads
//! make none), secrets, state batches with versions and bounds, and a
//! handler's commit: the job's completion, its state writes and its
//! effects' jobs together, or nothing for a stale lease; commits sent
//! together, each standing or falling alone.

use std::collections::BTreeMap;

use keel_core::handler::state::{StateOp, StateQuery};
use keel_core::handler::{HandlerKind, HandlerSettings, NewVersion, ObjectRef};
use keel_core::{Error, HandlerName, JobState};

use super::*;
use crate::{Acked, HandlerCommit};

cases![
    handler_versions_are_immutable_and_unchanged_uploads_make_none,
    state_batches_are_atomic_with_versions_and_bounds,
    a_commit_completes_the_job_with_its_state_and_effects,
    a_stale_lease_commits_nothing,
    commits_in_one_call_stand_or_fall_each_alone,
];

fn version(code: &str) -> NewVersion {
    NewVersion {
        kind: HandlerKind::Js,
        hash: format!("hash-of-{code}"),
        source: Some(code.to_owned()),
        artifact: code.as_bytes().to_vec(),
        settings: HandlerSettings::default(),
    }
}

fn put(key: &str, value: &str) -> StateOp {
    StateOp {
        key: key.into(),
        value: Some(raw(value)),
        if_version: None,
    }
}

fn object() -> ObjectRef {
    ObjectRef::new("customer", "c-1").unwrap()
}

async fn handler_versions_are_immutable_and_unchanged_uploads_make_none(h: Harness) {
    let s = h.store.clone();
    let name = HandlerName::new("greet").unwrap();
    let (v1, made) = s.handler_put(&ns(), &name, version("a"), T0).await.unwrap();
    assert!(made);
    assert_eq!((v1.version, v1.source.as_deref()), (1, Some("a")));
    let (same, made) = s
        .handler_put(&ns(), &name, version("a"), at(1))
        .await
        .unwrap();
    assert!(!made);
    assert_eq!(same.version, 1);
    let (v2, made) = s
        .handler_put(&ns(), &name, version("b"), at(2))
        .await
        .unwrap();
    assert!(made);
    assert_eq!(v2.version, 2);
    s.close().await;
    let s = (h.reopen)().await;
    assert_eq!(
        s.handler_get(&ns(), &name, None).await.unwrap().artifact,
        b"b"
    );
    assert_eq!(
        s.handler_get(&ns(), &name, Some(1)).await.unwrap().artifact,
        b"a"
    );
    let listed = s.handlers_list(&ns()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].version,
            listed[0].created_at,
            listed[0].updated_at
        ),
        (2, T0, at(2))
    );
    let secrets = BTreeMap::from([("API_KEY".to_owned(), "s3cr3t".to_owned())]);
    s.handler_secrets_put(&ns(), &name, &secrets, at(3))
        .await
        .unwrap();
    assert_eq!(s.handler_secrets(&ns(), &name).await.unwrap(), secrets);
    let other = HandlerName::new("other").unwrap();
    let missing = s
        .handler_secrets_put(&ns(), &other, &secrets, at(3))
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    s.handler_delete(&ns(), &name).await.unwrap();
    let gone = s.handler_get(&ns(), &name, Some(1)).await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFound);
    assert_eq!(
        s.handler_delete(&ns(), &name).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // A new handler of the same name starts again at 1.
    let (again, _) = s
        .handler_put(&ns(), &name, version("c"), at(4))
        .await
        .unwrap();
    assert_eq!(again.version, 1);
}

async fn state_batches_are_atomic_with_versions_and_bounds(h: Harness) {
    let s = h.store.clone();
    let o = object();
    let versions = s
        .state_write(
            &ns(),
            &o,
            vec![put("a", "1"), put("b", r#"{"x":2}"#), put("c", "3")],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    // A stale if_version refuses the whole batch (412), nothing written.
    let stale = StateOp {
        if_version: Some(1),
        ..put("b", "20")
    };
    let refused = s
        .state_write(&ns(), &o, vec![put("a", "10"), stale], at(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::VersionMismatch);
    let absent_only = StateOp {
        if_version: Some(0),
        ..put("a", "11")
    };
    let refused = s
        .state_write(&ns(), &o, vec![absent_only], at(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::VersionMismatch);
    let got = s
        .state_get(&ns(), &o, &["a".into(), "zz".into()])
        .await
        .unwrap();
    assert_eq!((got.len(), got[0].value.get(), got[0].version), (1, "1", 1));
    // A delete and a put at the right version; versions are never reused.
    let ok = StateOp {
        if_version: Some(2),
        ..put("b", "20")
    };
    let delete = StateOp {
        key: "a".into(),
        value: None,
        if_version: None,
    };
    assert_eq!(
        s.state_write(&ns(), &o, vec![ok, delete], at(2))
            .await
            .unwrap(),
        [4, 0]
    );
    assert_eq!(
        s.state_write(&ns(), &o, vec![put("a", "5")], at(3))
            .await
            .unwrap(),
        [6]
    );
    // Past the object's bound: 507, nothing written.
    let big = format!("\"{}\"", "x".repeat(200_000));
    let many: Vec<StateOp> = (0..100).map(|i| put(&format!("big{i:03}"), &big)).collect();
    let full = s.state_write(&ns(), &o, many, at(4)).await.unwrap_err();
    assert_eq!(full.code, ErrorCode::StorageFull);
    s.close().await;
    let s = (h.reopen)().await;
    let all = s
        .state_list(
            &ns(),
            &o,
            &StateQuery {
                limit: 10,
                ..StateQuery::default()
            },
        )
        .await
        .unwrap();
    let listed: Vec<(&str, &str, u64)> = all
        .iter()
        .map(|e| (e.key.as_str(), e.value.get(), e.version))
        .collect();
    assert_eq!(listed, [("a", "5", 6), ("b", "20", 4), ("c", "3", 3)]);
    let page = s
        .state_list(
            &ns(),
            &o,
            &StateQuery {
                after: Some("a".into()),
                limit: 1,
                ..StateQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let other = ObjectRef::new("customer", "c-2").unwrap();
    assert!(
        s.state_get(&ns(), &other, &["a".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_commit_completes_the_job_with_its_state_and_effects(h: Harness) {
    let s = h.store.clone();
    let q = queue("handled");
    enqueue(&*s, &q, vec![job("1")]).await;
    let leased = lease(&*s, &q, 1, at(1)).await;
    let effect = OwnedJob {
        queue: queue("effects"),
        id: keel_core::JobIdGenerator::default().next(at(1)),
        job: job(r#"{"publish":"t"}"#),
        owner: None,
    };
    let commit = HandlerCommit {
        token: leased[0].lease_token,
        result: Some(raw(r#"{"n":1}"#)),
        object: Some(object()),
        writes: vec![put("count", "1")],
        effects: vec![effect],
    };
    let acked = one(s.handler_commits(&ns(), vec![commit], at(2)).await).unwrap();
    assert_eq!(acked.state, JobState::Succeeded);
    s.close().await;
    let s = (h.reopen)().await;
    let job = s.job_get(&ns(), leased[0].id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result.as_ref().map(|r| r.get()), Some(r#"{"n":1}"#));
    let state = s
        .state_get(&ns(), &object(), &["count".into()])
        .await
        .unwrap();
    assert_eq!(state[0].value.get(), "1");
    let effects = lease(&*s, &queue("effects"), 10, at(3)).await;
    assert_eq!(payloads(&effects), [r#"{"publish":"t"}"#]);
}

async fn a_stale_lease_commits_nothing(h: Harness) {
    let s = h.store.clone();
    let q = queue("handled");
    enqueue(&*s, &q, vec![job("1")]).await;
    let first = lease(&*s, &q, 1, at(1)).await;
    // The lease (30 s) expires; another attempt takes the job.
    s.maintenance_run(at(40_000)).await.unwrap();
    let second = lease(&*s, &q, 1, at(40_000)).await;
    assert_eq!(second.len(), 1);
    let effect = OwnedJob {
        queue: queue("effects"),
        id: keel_core::JobIdGenerator::default().next(at(1)),
        job: job("{}"),
        owner: None,
    };
    let stale = HandlerCommit {
        token: first[0].lease_token,
        result: None,
        object: Some(object()),
        writes: vec![put("count", "1")],
        effects: vec![effect],
    };
    let refused = one(s.handler_commits(&ns(), vec![stale], at(40_001)).await).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LeaseLost);
    assert!(
        s.state_get(&ns(), &object(), &["count".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        lease(&*s, &queue("effects"), 10, at(40_002))
            .await
            .is_empty()
    );
    // A commit whose state would pass the object's bound commits nothing
    // either: the job stays leased for its attempt to fail.
    let big = format!("\"{}\"", "x".repeat(200_000));
    let too_big = HandlerCommit {
        token: second[0].lease_token,
        result: None,
        object: Some(object()),
        writes: (0..100).map(|i| put(&format!("k{i}"), &big)).collect(),
        effects: Vec::new(),
    };
    let full = one(s.handler_commits(&ns(), vec![too_big], at(40_003)).await).unwrap_err();
    assert_eq!(full.code, ErrorCode::StorageFull);
    let job = s.job_get(&ns(), second[0].id).await.unwrap();
    assert_eq!(job.state, JobState::Leased);
}

/// The one answer of a one-commit call.
fn one(answers: Result<Vec<Result<Acked, Error>>, Error>) -> Result<Acked, Error> {
    let mut answers = answers.unwrap();
    assert_eq!(answers.len(), 1);
    answers.remove(0)
}

async fn commits_in_one_call_stand_or_fall_each_alone(h: Harness) {
    let s = h.store.clone();
    let q = queue("handled");
    enqueue(&*s, &q, vec![job("1"), job("2"), job("3")]).await;
    let leased = lease(&*s, &q, 3, at(1)).await;
    assert_eq!(leased.len(), 3);
    let object_of = |key: &str| ObjectRef::new("customer", key).unwrap();
    let commit = |i: usize, writes: Vec<StateOp>| HandlerCommit {
        token: leased[i].lease_token,
        result: Some(raw(&format!("{i}"))),
        object: Some(object_of(&format!("c-{i}"))),
        writes,
        effects: Vec::new(),
    };
    let mut stale = commit(1, vec![put("count", "1")]);
    stale.token.lease_seq += 1;
    let big = format!("\"{}\"", "x".repeat(200_000));
    let too_big = commit(2, (0..100).map(|i| put(&format!("k{i}"), &big)).collect());
    let answers = s
        .handler_commits(
            &ns(),
            vec![commit(0, vec![put("count", "1")]), stale, too_big],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(answers[0].as_ref().unwrap().state, JobState::Succeeded);
    assert_eq!(answers[1].as_ref().unwrap_err().code, ErrorCode::LeaseLost);
    assert_eq!(
        answers[2].as_ref().unwrap_err().code,
        ErrorCode::StorageFull
    );
    s.close().await;
    let s = (h.reopen)().await;
    let state = |i: usize| {
        let s = s.clone();
        async move {
            s.state_get(
                &ns(),
                &object_of(&format!("c-{i}")),
                &["count".into(), "k0".into()],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(state(0).await.len(), 1, "the first commit stands");
    assert!(state(1).await.is_empty() && state(2).await.is_empty());
    let states: Vec<JobState> = job_states(&*s, &leased).await;
    assert_eq!(
        states,
        [JobState::Succeeded, JobState::Leased, JobState::Leased]
    );
}

async fn job_states(s: &dyn Store, leased: &[crate::LeasedJob]) -> Vec<JobState> {
    let mut states = Vec::new();
    for l in leased {
        states.push(s.job_get(&ns(), l.id).await.unwrap().state);
    }
    states
}
