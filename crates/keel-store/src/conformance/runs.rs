//! Runs: creation, compare-and-set journal writes, listing, pruning.

use super::*;

cases![
    runs_are_created_once_per_idempotency_key,
    run_updates_are_compare_and_set,
    runs_list_newest_first_filtered_and_paged,
    active_runs_span_namespaces,
    runs_survive_reopen,
    run_writes_create_their_jobs_or_nothing,
    run_writes_respect_the_namespace_bound,
    finished_runs_are_pruned_past_retention,
    a_finished_run_wakes_only_its_watchers,
];

pub(super) fn run_state(status: RunStatus) -> RunState {
    RunState {
        status,
        generation: 0,
        steps: [("a".to_owned(), StepRecord::pending())].into(),
        signals: Default::default(),
        completed: Vec::new(),
        compensating: false,
        compensations: Vec::new(),
        cancelling: false,
        output: None,
        error: None,
        deadline: None,
        wake_at: None,
        parent: None,
        traceparent: None,
    }
}

pub(super) fn new_run(id: u8, workflow: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: RunId::from_bytes([id; 16]),
        workflow: workflow.to_owned(),
        version: 1,
        input: r#"{"n":1}"#.to_owned(),
        state: run_state(RunStatus::Running),
        idempotency_key: key.map(str::to_owned),
    }
}

async fn runs_are_created_once_per_idempotency_key(h: Harness) {
    let s = &*h.store;
    let (first, dedup) = s
        .run_create(&ns(), new_run(1, "flow", Some("k")), Vec::new(), T0)
        .await
        .unwrap();
    assert!(!dedup);
    assert_eq!((first.rev, first.created_at), (1, T0));
    let (again, dedup) = s
        .run_create(&ns(), new_run(2, "flow", Some("k")), Vec::new(), at(5))
        .await
        .unwrap();
    assert!(dedup);
    assert_eq!(again.id, first.id);
    assert_eq!(again.input, r#"{"n":1}"#);
    let other = Namespace::new("other").unwrap();
    let (elsewhere, dedup) = s
        .run_create(&other, new_run(3, "flow", Some("k")), Vec::new(), at(5))
        .await
        .unwrap();
    assert!(!dedup && elsewhere.id != first.id, "keys are per namespace");
    let late = at(IDEMPOTENCY_WINDOW_MS + 1);
    let (fresh, dedup) = s
        .run_create(&ns(), new_run(4, "flow", Some("k")), Vec::new(), late)
        .await
        .unwrap();
    assert!(!dedup && fresh.id != first.id, "the window ended");
    let got = s.run_get(&ns(), first.id).await.unwrap();
    assert_eq!(got.state, run_state(RunStatus::Running));
    assert_eq!(
        s.run_get(&other, first.id).await.unwrap_err().code,
        ErrorCode::NotFound,
        "a run is found only in its namespace"
    );
}

async fn run_updates_are_compare_and_set(h: Harness) {
    let s = &*h.store;
    let (run, _) = s
        .run_create(&ns(), new_run(1, "flow", None), Vec::new(), T0)
        .await
        .unwrap();
    let mut state = run.state.clone();
    state.status = RunStatus::Succeeded;
    state.output = Some(serde_json::json!({"ok": true}));
    let rev = s
        .run_update(&ns(), run.id, run.rev, &state, Vec::new(), at(10))
        .await
        .unwrap();
    assert_eq!(rev, run.rev + 1);
    let stale = s
        .run_update(&ns(), run.id, run.rev, &run.state, Vec::new(), at(11))
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::Conflict, "a stale revision loses");
    let got = s.run_get(&ns(), run.id).await.unwrap();
    assert_eq!((got.rev, got.updated_at, &got.state), (rev, at(10), &state));
    let unknown = s
        .run_update(
            &ns(),
            RunId::from_bytes([9; 16]),
            1,
            &state,
            Vec::new(),
            at(12),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
}

async fn runs_list_newest_first_filtered_and_paged(h: Harness) {
    let s = &*h.store;
    for (i, wf) in [(1u8, "a"), (2, "b"), (3, "a"), (4, "a")] {
        s.run_create(&ns(), new_run(i, wf, None), Vec::new(), at(u64::from(i)))
            .await
            .unwrap();
    }
    let (run, _) = s
        .run_create(&ns(), new_run(5, "a", None), Vec::new(), at(5))
        .await
        .unwrap();
    let mut done = run.state.clone();
    done.status = RunStatus::Failed;
    s.run_update(&ns(), run.id, run.rev, &done, Vec::new(), at(6))
        .await
        .unwrap();

    let ids = |page: &crate::RunPage| {
        page.runs
            .iter()
            .map(|r| r.id.as_bytes()[0])
            .collect::<Vec<_>>()
    };
    let mut filter = RunFilter {
        workflow: Some("a".into()),
        limit: 2,
        ..Default::default()
    };
    let first = s.runs_list(&ns(), &filter).await.unwrap();
    assert_eq!(ids(&first), [5, 4]);
    filter.cursor = first.next_cursor.clone();
    let second = s.runs_list(&ns(), &filter).await.unwrap();
    assert_eq!(ids(&second), [3, 1]);
    assert_eq!(second.next_cursor, None);
    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(ids(&s.runs_list(&ns(), &failed).await.unwrap()), [5]);
    let mut counts = s.runs_count(&ns(), at(6)).await.unwrap();
    counts.sort();
    assert_eq!(counts, [(RunStatus::Running, 4), (RunStatus::Failed, 1)]);
    assert_eq!(
        s.runs_count(&ns(), at(7)).await.unwrap(),
        [(RunStatus::Running, 4)],
        "the failed run ended before"
    );
    assert!(
        s.runs_count(&Namespace::new("other").unwrap(), T0)
            .await
            .unwrap()
            .is_empty()
    );
    let window = RunFilter {
        since: Some(at(2)),
        until: Some(at(4)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(&s.runs_list(&ns(), &window).await.unwrap()),
        [3, 2],
        "started in [since, until)"
    );
    let bad = RunFilter {
        cursor: Some("nonsense".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        s.runs_list(&ns(), &bad).await.unwrap_err().code,
        ErrorCode::InvalidRequest
    );
}

async fn active_runs_span_namespaces(h: Harness) {
    let s = &*h.store;
    let other = Namespace::new("other").unwrap();
    s.run_create(&ns(), new_run(1, "a", None), Vec::new(), T0)
        .await
        .unwrap();
    s.run_create(&other, new_run(2, "a", None), Vec::new(), T0)
        .await
        .unwrap();
    let (done, _) = s
        .run_create(&ns(), new_run(3, "a", None), Vec::new(), T0)
        .await
        .unwrap();
    s.run_create(&other, new_run(4, "a", None), Vec::new(), T0)
        .await
        .unwrap();
    s.run_update(
        &ns(),
        done.id,
        done.rev,
        &run_state(RunStatus::Cancelled),
        Vec::new(),
        T0,
    )
    .await
    .unwrap();
    let first = s.runs_active(None, 2).await.unwrap();
    let second = s.runs_active(first.next_cursor.clone(), 2).await.unwrap();
    let seen: Vec<(String, u8)> = first
        .runs
        .iter()
        .chain(&second.runs)
        .map(|r| (r.namespace.to_string(), r.id.as_bytes()[0]))
        .collect();
    assert_eq!(
        seen,
        [
            ("default".into(), 1),
            ("other".into(), 2),
            ("other".into(), 4)
        ],
        "oldest first, finished runs left out"
    );
    assert_eq!(second.next_cursor, None);
}

async fn runs_survive_reopen(h: Harness) {
    h.store
        .workflow_put(&ns(), "flow", r#"{"v":1}"#, T0)
        .await
        .unwrap();
    let (run, _) = h
        .store
        .run_create(&ns(), new_run(1, "flow", Some("k")), Vec::new(), T0)
        .await
        .unwrap();
    let mut state = run.state.clone();
    state.steps.get_mut("a").unwrap().attempts = 2;
    h.store
        .run_update(&ns(), run.id, run.rev, &state, Vec::new(), at(1))
        .await
        .unwrap();
    h.store.close().await;
    let store = (h.reopen)().await;
    assert_eq!(
        store
            .workflow_get(&ns(), "flow", None)
            .await
            .unwrap()
            .version,
        1
    );
    let got = store.run_get(&ns(), run.id).await.unwrap();
    assert_eq!((got.rev, &got.state), (run.rev + 1, &state));
    let (again, dedup) = store
        .run_create(&ns(), new_run(2, "flow", Some("k")), Vec::new(), at(2))
        .await
        .unwrap();
    assert!(dedup && again.id == run.id);
}

async fn run_writes_create_their_jobs_or_nothing(h: Harness) {
    let s = &*h.store;
    let q = queue("steps");
    let leased_ids = |jobs: Vec<LeasedJob>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();

    // Created with the run, under the ids the journal names; ready at once.
    let created = new_run(1, "flow", Some("k"));
    let run_id = created.id;
    let (run, _) = s
        .run_create(&ns(), created, vec![owned_job(&q, 11, run_id)], T0)
        .await
        .unwrap();
    let got = s.job_get(&ns(), JobId::from_bytes([11; 16])).await.unwrap();
    assert_eq!(got.tags["keel.run"], run_id.to_string());
    assert_eq!(
        leased_ids(lease(s, &q, 10, T0).await),
        vec![JobId::from_bytes([11; 16])]
    );

    // A second start under the same key finds the run and creates nothing.
    let (again, found) = s
        .run_create(
            &ns(),
            new_run(2, "flow", Some("k")),
            vec![owned_job(&q, 12, run_id)],
            at(1),
        )
        .await
        .unwrap();
    assert!(found && again.id == run_id);
    assert_eq!(
        s.job_get(&ns(), JobId::from_bytes([12; 16]))
            .await
            .unwrap_err()
            .code,
        ErrorCode::JobNotFound
    );

    // An update writes its jobs with the journal...
    let rev = s
        .run_update(
            &ns(),
            run_id,
            run.rev,
            &run.state,
            vec![owned_job(&q, 13, run_id)],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(
        leased_ids(lease(s, &q, 10, at(2)).await),
        vec![JobId::from_bytes([13; 16])]
    );
    // ...and a stale one writes neither.
    let stale = s
        .run_update(
            &ns(),
            run_id,
            run.rev,
            &run.state,
            vec![owned_job(&q, 14, run_id)],
            at(3),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::Conflict);
    assert_eq!(
        s.job_get(&ns(), JobId::from_bytes([14; 16]))
            .await
            .unwrap_err()
            .code,
        ErrorCode::JobNotFound
    );
    assert_eq!(s.run_get(&ns(), run_id).await.unwrap().rev, rev);

    // A run started without a key gets its jobs the same way...
    let keyless = new_run(3, "flow", None);
    let keyless_id = keyless.id;
    s.run_create(&ns(), keyless, vec![owned_job(&q, 15, keyless_id)], at(4))
        .await
        .unwrap();
    assert_eq!(
        leased_ids(lease(s, &q, 10, at(4)).await),
        vec![JobId::from_bytes([15; 16])]
    );
    // ...and an update of a run that does not exist writes no job.
    let unknown = s
        .run_update(
            &ns(),
            RunId::from_bytes([9; 16]),
            1,
            &run.state,
            vec![owned_job(&q, 16, run_id)],
            at(5),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
    assert_eq!(
        s.job_get(&ns(), JobId::from_bytes([16; 16]))
            .await
            .unwrap_err()
            .code,
        ErrorCode::JobNotFound
    );
}

async fn run_writes_respect_the_namespace_bound(h: Harness) {
    let s = &*h.store;
    let q = queue("steps");
    let bound = limits().max_namespace_jobs;
    enqueue(s, &q, (1..bound).map(|i| job(&i.to_string())).collect()).await;
    let (run, _) = s
        .run_create(&ns(), new_run(1, "flow", None), Vec::new(), T0)
        .await
        .unwrap();

    let created = new_run(2, "flow", None);
    let id = created.id;
    let two = |a: u8, b: u8, run: RunId| vec![owned_job(&q, a, run), owned_job(&q, b, run)];
    let err = s
        .run_create(&ns(), created, two(11, 12, id), T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NamespaceFull);
    let gone = s.run_get(&ns(), id).await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFound, "no run without its jobs");

    let err = s
        .run_update(
            &ns(),
            run.id,
            run.rev,
            &run.state,
            two(13, 14, run.id),
            at(1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NamespaceFull);
    let kept = s.run_get(&ns(), run.id).await.unwrap();
    assert_eq!(kept.rev, run.rev, "no journal without its jobs");
    for id in [11, 12, 13, 14] {
        let missing = s.job_get(&ns(), JobId::from_bytes([id; 16])).await;
        assert_eq!(missing.unwrap_err().code, ErrorCode::JobNotFound);
    }
}

async fn finished_runs_are_pruned_past_retention(h: Harness) {
    let s = &*h.store;
    // Run 1 keeps running; 2 and 4 finish at 10, 3 at 20.
    let mut runs = Vec::new();
    for (i, key) in [(1u8, None), (2, Some("k")), (3, None), (4, None)] {
        let (run, _) = s
            .run_create(&ns(), new_run(i, "flow", key), Vec::new(), at(1))
            .await
            .unwrap();
        runs.push(run);
    }
    for (run, status, when) in [
        (&runs[1], RunStatus::Succeeded, 10),
        (&runs[2], RunStatus::Compensated, 20),
        (&runs[3], RunStatus::Failed, 10),
    ] {
        let mut done = run.state.clone();
        done.status = status;
        s.run_update(&ns(), run.id, run.rev, &done, Vec::new(), at(when))
            .await
            .unwrap();
    }

    assert_eq!(
        s.runs_prune(at(10), 1).await.unwrap(),
        1,
        "at most the limit"
    );
    assert_eq!(s.runs_prune(at(10), 10).await.unwrap(), 1);
    assert_eq!(s.runs_prune(at(10), 10).await.unwrap(), 0);
    for (run, kept) in runs.iter().zip([true, false, true, false]) {
        let got = s.run_get(&ns(), run.id).await;
        if kept {
            assert_eq!(got.unwrap().id, run.id);
        } else {
            assert_eq!(got.unwrap_err().code, ErrorCode::NotFound);
        }
    }
    let (again, dedup) = s
        .run_create(&ns(), new_run(5, "flow", Some("k")), Vec::new(), at(30))
        .await
        .unwrap();
    assert!(
        !dedup && again.id != runs[1].id,
        "a pruned run frees its key"
    );
    assert_eq!(
        s.runs_prune(at(1_000), 10).await.unwrap(),
        1,
        "running runs are never pruned, however old"
    );

    // A failed run that is retried runs again, so it is not pruned either.
    let (retried, _) = s
        .run_create(&ns(), new_run(6, "flow", None), Vec::new(), at(40))
        .await
        .unwrap();
    let mut failed = retried.state.clone();
    failed.status = RunStatus::Failed;
    let rev = s
        .run_update(&ns(), retried.id, retried.rev, &failed, Vec::new(), at(41))
        .await
        .unwrap();
    s.run_update(&ns(), retried.id, rev, &retried.state, Vec::new(), at(42))
        .await
        .unwrap();
    assert_eq!(s.runs_prune(at(1_000), 10).await.unwrap(), 0);
    let got = s.run_get(&ns(), retried.id).await.unwrap();
    assert_eq!(got.state.status, RunStatus::Running);
}

/// Readers waiting for a run wake when it is written with a final status, and
/// readers of other runs, or of a run that only moved on, do not.
async fn a_finished_run_wakes_only_its_watchers(h: Harness) {
    let s = &*h.store;
    let signal = s.ready_signal();
    let (one, _) = s
        .run_create(&ns(), new_run(1, "flow", None), Vec::new(), T0)
        .await
        .unwrap();
    let (two, _) = s
        .run_create(&ns(), new_run(2, "flow", None), Vec::new(), T0)
        .await
        .unwrap();
    let (mut watch_one, mut watch_two) = (signal.watch_run(one.id), signal.watch_run(two.id));

    let mut moved = two.state.clone();
    moved.generation += 1;
    s.run_update(&ns(), two.id, two.rev, &moved, Vec::new(), at(1))
        .await
        .unwrap();
    let mut done = one.state.clone();
    done.status = RunStatus::Succeeded;
    s.run_update(&ns(), one.id, one.rev, &done, Vec::new(), at(2))
        .await
        .unwrap();

    let woken = watch_one.finished();
    tokio::pin!(woken);
    assert!(
        futures_ready(woken).await,
        "the finished run's reader wakes"
    );
    let not_woken = watch_two.finished();
    tokio::pin!(not_woken);
    assert_pending(not_woken).await;
}
