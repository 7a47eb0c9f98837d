//! The conformance suite: what every [`Store`] must do, checked the same way on
//! every backend. A backend runs it with [`store_conformance_suite!`], giving an
//! opener that makes a fresh, empty store (and can reopen it on the same data,
//! which checks that nothing lives only in memory).
//!
//! Time is passed explicitly: the suite moves a fake `now`, never sleeps.

#![allow(
    clippy::unwrap_used,
    reason = "a test suite: a panic is a failed check"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keel_core::{
    Backoff, ErrorCode, JobId, JobState, LeaseToken, Limits, Namespace, NewJob, QueueName,
    QueuePolicy, QueueRef, Retry, Timestamp,
};
use serde_json::value::RawValue;

use keel_core::workflow::{RunId, RunState, RunStatus, StepRecord};

use crate::{
    Ack, AckOutcome, IDEMPOTENCY_WINDOW_MS, JobFilter, LeaseRequest, LeasedJob, NewRun, RUN_TAG,
    RedriveSelection, RunFilter, RunJob, Store,
};

type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync>;

/// A store under test: `reopen` closes nothing itself; call [`Store::close`] on
/// the old handle first, as a restarted process would have.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub reopen: Reopen,
    /// Keeps temporary directories or schemas alive for the test's duration.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

/// Generates one `#[tokio::test]` per suite case. `$open` is an
/// `async fn(Limits) -> Harness`.
#[macro_export]
macro_rules! store_conformance_suite {
    ($open:path) => {
        $crate::store_conformance_suite!(@cases $open;
            enqueue_then_get, lease_orders_by_priority_then_run_at_then_fifo,
            lease_is_scoped_to_its_queue, complete_is_fenced_by_the_lease_token,
            fail_backs_off_then_dies, heartbeat_extends_the_lease,
            expired_leases_return_or_die, cancel_applies_to_unfinished_jobs,
            idempotency_keys_dedupe_within_the_window, ordering_keys_run_one_at_a_time_in_order,
            redrive_resets_dead_jobs, list_is_newest_first_filtered_and_paged,
            stats_count_by_state, pause_stops_leasing_until_resume,
            policy_round_trips_and_bounds_concurrency, namespace_bound_refuses_whole_batch,
            enqueue_fires_the_ready_signal, each_ready_job_wakes_one_waiting_leaser,
            maintenance_reports_the_next_deadline,
            prune_deletes_finished_jobs_past_retention, batch_ack_answers_each_item,
            state_survives_reopen, unknown_jobs_are_not_found,
            new_deadlines_wake_maintenance, workflow_versions_change_only_with_content,
            runs_are_created_once_per_idempotency_key, run_updates_are_compare_and_set,
            runs_list_newest_first_filtered_and_paged, active_runs_span_namespaces,
            runs_survive_reopen, acks_say_which_jobs_belong_to_runs,
            run_writes_create_their_jobs_or_nothing, run_writes_respect_the_namespace_bound,
            finished_runs_are_pruned_past_retention);

        /// Random interleavings of leases, acks, heartbeats, cancels and time.
        #[test]
        fn random_operation_sequences_lose_nothing() {
            $crate::conformance::random_operation_sequences_lose_nothing(|| {
                Box::pin($open($crate::conformance::limits()))
            });
        }
    };
    (@cases $open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let harness = $open($crate::conformance::limits()).await;
                $crate::conformance::$case(harness).await;
            }
        )*
    };
}

/// The limits every suite store is opened with: a small namespace bound.
pub fn limits() -> Limits {
    Limits {
        max_namespace_jobs: 20,
        ..Limits::default()
    }
}

pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn at(ms: u64) -> Timestamp {
    T0.plus_ms(ms)
}

fn queue(name: &str) -> QueueRef {
    QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new(name).unwrap(),
    }
}

fn ns() -> Namespace {
    Namespace::new("default").unwrap()
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

/// A ready job with `payload`, due at `T0`.
fn job(payload: &str) -> NewJob {
    NewJob {
        payload: raw(payload),
        priority: 0,
        run_at: T0,
        max_attempts: 3,
        backoff: Backoff {
            base_ms: 1000,
            max_ms: 60_000,
            factor: 2.0,
            jitter: false,
        },
        lease_ms: 30_000,
        idempotency_key: None,
        ordering_key: None,
        tags: Default::default(),
    }
}

async fn enqueue(store: &dyn Store, q: &QueueRef, jobs: Vec<NewJob>) -> Vec<JobId> {
    store
        .jobs_enqueue(q, jobs, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn lease(store: &dyn Store, q: &QueueRef, max_jobs: u32, now: Timestamp) -> Vec<LeasedJob> {
    let req = LeaseRequest {
        queue: q.clone(),
        worker_id: "w1".into(),
        max_jobs,
        lease_ms: None,
    };
    store.jobs_lease(&req, now).await.unwrap()
}

fn payloads(jobs: &[LeasedJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.payload.get()).collect()
}

async fn ack(
    store: &dyn Store,
    token: LeaseToken,
    outcome: AckOutcome,
    now: Timestamp,
) -> Result<JobState, ErrorCode> {
    let mut results = store
        .jobs_ack(&ns(), vec![Ack { token, outcome }], now)
        .await
        .unwrap();
    results.pop().unwrap().map(|a| a.state).map_err(|e| e.code)
}

fn complete() -> AckOutcome {
    AckOutcome::Complete {
        result: Some(raw(r#"{"ok":true}"#)),
    }
}

fn fail(retry: bool) -> AckOutcome {
    AckOutcome::Fail {
        message: "boom".into(),
        retry: Retry {
            retry,
            retry_after_ms: None,
        },
    }
}

pub async fn enqueue_then_get(h: Harness) {
    let q = queue("emails");
    let mut delayed = job(r#"{"to":"a@example.com"}"#);
    delayed.run_at = at(5000);
    delayed.priority = 7;
    delayed.tags.insert("tenant".into(), "acme".into());
    delayed.ordering_key = Some("acct-1".into());
    delayed.idempotency_key = Some("mail-1".into());
    let out = h
        .store
        .jobs_enqueue(&q, vec![job("1"), delayed], T0)
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].state, JobState::Ready);
    assert_eq!(out[1].state, JobState::Scheduled);
    assert!(!out[0].deduplicated);
    assert!(
        out[0].id < out[1].id,
        "ids are time-ordered in enqueue order"
    );

    let got = h.store.job_get(&ns(), out[1].id).await.unwrap();
    assert_eq!(got.id, out[1].id);
    assert_eq!(got.queue, "emails");
    assert_eq!(got.state, JobState::Scheduled);
    assert_eq!(got.payload.get(), r#"{"to":"a@example.com"}"#);
    assert_eq!(got.priority, 7);
    assert_eq!(got.attempt, 0);
    assert_eq!(got.max_attempts, 3);
    assert_eq!(got.run_at, at(5000));
    assert_eq!(got.created_at, T0);
    assert_eq!(got.tags.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(got.ordering_key.as_deref(), Some("acct-1"));
    assert_eq!(got.idempotency_key.as_deref(), Some("mail-1"));
    assert!(got.result.is_none() && got.errors.is_empty());
}

pub async fn lease_orders_by_priority_then_run_at_then_fifo(h: Harness) {
    let q = queue("work");
    let mut high = job(r#""high""#);
    high.priority = 10;
    let mut low = job(r#""low""#);
    low.priority = -5;
    let mut early = job(r#""early""#);
    early.run_at = at(0).plus_ms(0);
    let mut late_due = job(r#""second""#);
    late_due.run_at = T0;
    enqueue(&*h.store, &q, vec![low, job(r#""first""#), late_due, high]).await;
    // Jobs enqueued later but due earlier go first within one priority.
    let mut older = job(r#""older_run_at""#);
    older.run_at = Timestamp::from_millis(T0.as_millis() - 1000);
    enqueue(&*h.store, &q, vec![older]).await;

    let first = lease(&*h.store, &q, 2, T0).await;
    assert_eq!(payloads(&first), [r#""high""#, r#""older_run_at""#]);
    let rest = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(payloads(&rest), [r#""first""#, r#""second""#, r#""low""#]);
    for j in first.iter().chain(&rest) {
        assert_eq!(j.attempt, 1);
        assert_eq!(j.lease_token.job, j.id);
        assert_eq!(j.lease_expires_at, at(30_000));
    }
    assert!(
        lease(&*h.store, &q, 10, T0).await.is_empty(),
        "each job leased once"
    );
}

pub async fn lease_is_scoped_to_its_queue(h: Harness) {
    let other_ns = QueueRef {
        namespace: Namespace::new("tenant-b").unwrap(),
        queue: QueueName::new("work").unwrap(),
    };
    enqueue(&*h.store, &queue("other"), vec![job("1")]).await;
    enqueue(&*h.store, &other_ns, vec![job("2")]).await;
    assert!(lease(&*h.store, &queue("work"), 10, T0).await.is_empty());
    let theirs = lease(&*h.store, &other_ns, 10, T0).await;
    assert_eq!(theirs.len(), 1);
    let acks = vec![Ack {
        token: theirs[0].lease_token,
        outcome: AckOutcome::Complete { result: None },
    }];
    let answers = h.store.jobs_ack(&ns(), acks, T0).await.unwrap();
    assert_eq!(
        answers[0].as_ref().unwrap_err().code,
        ErrorCode::JobNotFound,
        "an ack through another namespace does not reach the job"
    );
    let id = enqueue(&*h.store, &queue("other"), vec![job("3")]).await[0];
    let err = h
        .store
        .job_get(&Namespace::new("tenant-b").unwrap(), id)
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::JobNotFound,
        "namespaces do not see each other's jobs"
    );
}

pub async fn complete_is_fenced_by_the_lease_token(h: Harness) {
    let q = queue("work");
    let id = enqueue(&*h.store, &q, vec![job("1")]).await[0];
    let leased = lease(&*h.store, &q, 1, T0).await;
    let token = leased[0].lease_token;
    let stale = LeaseToken {
        job: id,
        lease_seq: token.lease_seq + 1,
    };
    assert_eq!(
        ack(&*h.store, stale, complete(), at(1)).await,
        Err(ErrorCode::LeaseLost)
    );
    assert_eq!(
        ack(&*h.store, token, complete(), at(1)).await,
        Ok(JobState::Succeeded)
    );
    assert_eq!(
        ack(&*h.store, token, complete(), at(2)).await,
        Err(ErrorCode::LeaseLost)
    );
    let got = h.store.job_get(&ns(), id).await.unwrap();
    assert_eq!(got.state, JobState::Succeeded);
    assert_eq!(got.result.unwrap().get(), r#"{"ok":true}"#);
    assert_eq!(got.updated_at, at(1));

    // A lease past its expiry is lost even before maintenance reclaims it.
    let id = enqueue(&*h.store, &q, vec![job("2")]).await[0];
    let leased = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(leased[0].id, id);
    let late = ack(&*h.store, leased[0].lease_token, complete(), at(30_000)).await;
    assert_eq!(late, Err(ErrorCode::LeaseLost));
}

pub async fn fail_backs_off_then_dies(h: Harness) {
    let q = queue("work");
    let id = enqueue(&*h.store, &q, vec![job("1")]).await[0];
    let l1 = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(
        ack(&*h.store, l1[0].lease_token, fail(true), at(10)).await,
        Ok(JobState::Scheduled)
    );
    let got = h.store.job_get(&ns(), id).await.unwrap();
    assert_eq!(got.run_at, at(1010), "first retry waits base_ms");
    assert!(lease(&*h.store, &q, 1, at(1009)).await.is_empty());
    let report = h.store.maintenance_run(at(1009)).await.unwrap();
    assert_eq!(report.promoted, 0);
    assert_eq!(report.next_due, Some(at(1010)));
    assert_eq!(h.store.maintenance_run(at(1010)).await.unwrap().promoted, 1);

    let l2 = lease(&*h.store, &q, 1, at(1010)).await;
    assert_eq!(l2[0].attempt, 2);
    assert_eq!(
        ack(&*h.store, l2[0].lease_token, fail(true), at(1020)).await,
        Ok(JobState::Scheduled)
    );
    assert_eq!(
        h.store.job_get(&ns(), id).await.unwrap().run_at,
        at(3020),
        "second retry waits base*factor"
    );
    h.store.maintenance_run(at(3020)).await.unwrap();
    let l3 = lease(&*h.store, &q, 1, at(3020)).await;
    assert_eq!(
        ack(&*h.store, l3[0].lease_token, fail(true), at(3030)).await,
        Ok(JobState::Dead)
    );

    let got = h.store.job_get(&ns(), id).await.unwrap();
    assert_eq!(got.state, JobState::Dead);
    let attempts: Vec<u32> = got.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(got.errors[0].message, "boom");
    assert_eq!(got.errors[0].at, at(10));

    let id = enqueue(&*h.store, &q, vec![job("2")]).await[0];
    let l = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(
        ack(&*h.store, l[0].lease_token, fail(false), at(1)).await,
        Ok(JobState::Dead),
        "retry=false is final"
    );
    assert_eq!(h.store.job_get(&ns(), id).await.unwrap().attempt, 1);
}

pub async fn heartbeat_extends_the_lease(h: Harness) {
    let q = queue("work");
    enqueue(&*h.store, &q, vec![job("1")]).await;
    let token = lease(&*h.store, &q, 1, T0).await[0].lease_token;
    let until = h
        .store
        .job_heartbeat(&ns(), token, Some(60_000), at(20_000))
        .await
        .unwrap();
    assert_eq!(until, at(80_000));
    assert!(
        h.store
            .maintenance_run(at(50_000))
            .await
            .unwrap()
            .expired_to_ready
            .is_empty()
    );
    let stale = LeaseToken {
        job: token.job,
        lease_seq: 99,
    };
    let err = h
        .store
        .job_heartbeat(&ns(), stale, None, at(20_000))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LeaseLost);
    assert_eq!(
        ack(&*h.store, token, complete(), at(79_999)).await,
        Ok(JobState::Succeeded)
    );
}

pub async fn expired_leases_return_or_die(h: Harness) {
    let q = queue("work");
    let mut once = job("1");
    once.max_attempts = 2;
    let id = enqueue(&*h.store, &q, vec![once]).await[0];
    let l1 = lease(&*h.store, &q, 1, T0).await;
    let report = h.store.maintenance_run(at(29_999)).await.unwrap();
    assert!(report.expired_to_ready.is_empty());
    assert_eq!(report.next_due, Some(at(30_000)));
    let report = h.store.maintenance_run(at(30_000)).await.unwrap();
    assert_eq!(report.expired_to_ready, vec![q.clone()]);
    let got = h.store.job_get(&ns(), id).await.unwrap();
    assert_eq!((got.state, got.attempt), (JobState::Ready, 1));
    assert_eq!(got.errors.len(), 1, "an expired lease is a failed attempt");
    assert_eq!(
        ack(&*h.store, l1[0].lease_token, complete(), at(30_001)).await,
        Err(ErrorCode::LeaseLost)
    );

    let l2 = lease(&*h.store, &q, 1, at(30_000)).await;
    assert_eq!(l2[0].attempt, 2);
    let report = h.store.maintenance_run(at(60_000)).await.unwrap();
    assert_eq!(report.expired_to_dead, vec![q.clone()]);
    assert_eq!(
        h.store.job_get(&ns(), id).await.unwrap().state,
        JobState::Dead
    );
}

pub async fn cancel_applies_to_unfinished_jobs(h: Harness) {
    let q = queue("work");
    let mut later = job("1");
    later.run_at = at(10_000);
    let ids = enqueue(&*h.store, &q, vec![later, job("2"), job("3")]).await;
    let leased = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(leased[0].id, ids[1]);
    for id in &ids {
        let acked = h.store.job_cancel(&ns(), *id, at(1)).await.unwrap();
        assert_eq!(acked.state, JobState::Cancelled);
    }
    assert_eq!(
        ack(&*h.store, leased[0].lease_token, complete(), at(2)).await,
        Err(ErrorCode::LeaseLost)
    );
    let err = h.store.job_cancel(&ns(), ids[0], at(3)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidState);
    assert!(lease(&*h.store, &q, 10, at(20_000)).await.is_empty());
    h.store.maintenance_run(at(20_000)).await.unwrap();
    assert!(
        lease(&*h.store, &q, 10, at(20_000)).await.is_empty(),
        "a cancelled job is never promoted"
    );
}

pub async fn idempotency_keys_dedupe_within_the_window(h: Harness) {
    let q = queue("work");
    let keyed = |payload: &str| {
        let mut j = job(payload);
        j.idempotency_key = Some("order-42".into());
        j
    };
    let first = h
        .store
        .jobs_enqueue(&q, vec![keyed("1"), keyed("2")], T0)
        .await
        .unwrap();
    assert_eq!(first[1].id, first[0].id, "a duplicate within one batch");
    assert!(first[1].deduplicated && !first[0].deduplicated);
    let again = h
        .store
        .jobs_enqueue(&queue("elsewhere"), vec![keyed("3")], at(1000))
        .await
        .unwrap();
    assert_eq!(again[0].id, first[0].id, "keys are scoped to the namespace");
    assert!(again[0].deduplicated);
    assert_eq!(
        h.store
            .job_get(&ns(), first[0].id)
            .await
            .unwrap()
            .payload
            .get(),
        "1"
    );

    let later = T0.plus_ms(IDEMPOTENCY_WINDOW_MS);
    let fresh = h
        .store
        .jobs_enqueue(&q, vec![keyed("4")], later)
        .await
        .unwrap();
    assert_ne!(fresh[0].id, first[0].id, "the window has passed");
    assert!(!fresh[0].deduplicated);
}

pub async fn ordering_keys_run_one_at_a_time_in_order(h: Harness) {
    let q = queue("work");
    let keyed = |payload: &str, key: &str| {
        let mut j = job(payload);
        j.ordering_key = Some(key.into());
        j
    };
    let ids = enqueue(
        &*h.store,
        &q,
        vec![
            keyed(r#""a1""#, "a"),
            keyed(r#""a2""#, "a"),
            keyed(r#""b1""#, "b"),
            keyed(r#""a3""#, "a"),
            job(r#""free""#),
        ],
    )
    .await;
    let first = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(payloads(&first), [r#""a1""#, r#""b1""#, r#""free""#]);
    // a1 fails and waits for its retry: a2 must still wait behind it.
    assert_eq!(
        ack(&*h.store, first[0].lease_token, fail(true), at(1)).await,
        Ok(JobState::Scheduled)
    );
    assert!(lease(&*h.store, &q, 10, at(1)).await.is_empty());
    h.store.maintenance_run(at(1001)).await.unwrap();
    let retry = lease(&*h.store, &q, 10, at(1001)).await;
    assert_eq!(payloads(&retry), [r#""a1""#]);
    assert_eq!(
        ack(&*h.store, retry[0].lease_token, complete(), at(1002)).await,
        Ok(JobState::Succeeded)
    );
    let next = lease(&*h.store, &q, 10, at(1002)).await;
    assert_eq!(payloads(&next), [r#""a2""#]);
    // A cancelled head releases the key too.
    h.store.job_cancel(&ns(), ids[1], at(1003)).await.unwrap();
    assert_eq!(
        payloads(&lease(&*h.store, &q, 10, at(1003)).await),
        [r#""a3""#]
    );
}

pub async fn redrive_resets_dead_jobs(h: Harness) {
    let q = queue("work");
    let ids = enqueue(&*h.store, &q, vec![job("1"), job("2"), job("3")]).await;
    for leased in lease(&*h.store, &q, 2, T0).await {
        ack(&*h.store, leased.lease_token, fail(false), at(1))
            .await
            .unwrap();
    }
    let moved = h
        .store
        .jobs_redrive(
            &q,
            RedriveSelection::Ids(vec![ids[0], ids[2]]),
            Some(raw(r#"{"fixed":true}"#)),
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(moved, vec![ids[0]], "only dead jobs move");
    let got = h.store.job_get(&ns(), ids[0]).await.unwrap();
    assert_eq!((got.state, got.attempt), (JobState::Ready, 0));
    assert_eq!(got.payload.get(), r#"{"fixed":true}"#);
    assert_eq!(got.errors.len(), 1, "the history of failures is kept");
    let again = lease(&*h.store, &q, 10, at(2)).await;
    // The redriven job is due from the redrive on, so the older ready job goes first.
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[2], ids[0]]
    );
    assert_eq!(again[1].attempt, 1);

    ack(&*h.store, again[1].lease_token, fail(false), at(3))
        .await
        .unwrap();
    let all = h
        .store
        .jobs_redrive(&q, RedriveSelection::All, None, at(4))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        h.store.job_get(&ns(), ids[1]).await.unwrap().payload.get(),
        "2"
    );
}

pub async fn list_is_newest_first_filtered_and_paged(h: Harness) {
    let q = queue("work");
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut j = job(&i.to_string());
        j.tags.insert(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        ids.extend(enqueue(&*h.store, &q, vec![j]).await);
    }
    ids.extend(enqueue(&*h.store, &queue("other"), vec![job("8")]).await);
    let lease1 = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(lease1[0].id, ids[0]);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let filter = JobFilter {
            queue: Some(q.queue.clone()),
            limit: 3,
            cursor,
            ..Default::default()
        };
        let page = h.store.jobs_list(&ns(), &filter).await.unwrap();
        assert!(page.jobs.len() <= 3);
        seen.extend(page.jobs.iter().map(|j| j.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut expected: Vec<JobId> = ids[..7].to_vec();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, every job once");

    let leased = JobFilter {
        state: Some(JobState::Leased),
        limit: 10,
        ..Default::default()
    };
    let page = h.store.jobs_list(&ns(), &leased).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[0]]);
    let odd = JobFilter {
        tag: Some(("parity".into(), "odd".into())),
        limit: 10,
        ..Default::default()
    };
    let page = h.store.jobs_list(&ns(), &odd).await.unwrap();
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[5], ids[3], ids[1]]
    );
    assert!(page.next_cursor.is_none());
    let all = JobFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(h.store.jobs_list(&ns(), &all).await.unwrap().jobs.len(), 8);
    let bad = JobFilter {
        limit: 10,
        cursor: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        h.store.jobs_list(&ns(), &bad).await.unwrap_err().code,
        ErrorCode::InvalidRequest
    );
}

pub async fn stats_count_by_state(h: Harness) {
    let q = queue("work");
    let mut later = job("1");
    later.run_at = at(60_000);
    let old = Timestamp::from_millis(T0.as_millis() - 5000);
    let mut waiting = job("0");
    waiting.run_at = old;
    enqueue(&*h.store, &q, vec![waiting, later, job("2"), job("3")]).await;
    let leased = lease(&*h.store, &q, 2, T0).await;
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    let stats = h.store.queue_stats(&q).await.unwrap();
    let count = |s| stats.counts.get(&s).copied().unwrap_or(0);
    assert_eq!(count(JobState::Scheduled), 1);
    assert_eq!(count(JobState::Ready), 1);
    assert_eq!(count(JobState::Leased), 1);
    assert_eq!(count(JobState::Succeeded), 1);
    assert_eq!(stats.oldest_ready_at, Some(T0));
    assert!(!stats.paused);
    let depths = h.store.queue_depths().await.unwrap();
    assert!(
        depths
            .iter()
            .any(|d| d.queue == q && d.state == JobState::Leased && d.count == 1)
    );
    assert!(
        depths.iter().all(|d| !d.state.is_final()),
        "depth is about unfinished jobs"
    );
}

pub async fn pause_stops_leasing_until_resume(h: Harness) {
    let q = queue("work");
    h.store.queue_pause(&q, true, T0).await.unwrap();
    enqueue(&*h.store, &q, vec![job("1")]).await;
    assert!(lease(&*h.store, &q, 10, T0).await.is_empty());
    assert!(h.store.queue_stats(&q).await.unwrap().paused);
    let listener = h.store.ready_signal().listener(&q);
    let woken = listener.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    h.store.queue_pause(&q, false, T0).await.unwrap();
    assert!(futures_ready(woken).await, "resume wakes leasers");
    assert_eq!(lease(&*h.store, &q, 10, T0).await.len(), 1);
}

pub async fn policy_round_trips_and_bounds_concurrency(h: Harness) {
    let q = queue("work");
    assert_eq!(
        h.store.queue_policy(&q).await.unwrap(),
        QueuePolicy::default()
    );
    let policy = QueuePolicy {
        max_concurrency: Some(2),
        max_attempts: Some(9),
        ..Default::default()
    };
    h.store
        .queue_policy_set(&q, policy.clone(), T0)
        .await
        .unwrap();
    assert_eq!(h.store.queue_policy(&q).await.unwrap(), policy);
    enqueue(&*h.store, &q, (0..5).map(|i| job(&i.to_string())).collect()).await;
    let leased = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(leased.len(), 2);
    assert!(lease(&*h.store, &q, 10, T0).await.is_empty());
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    assert_eq!(lease(&*h.store, &q, 10, at(1)).await.len(), 1);
}

pub async fn namespace_bound_refuses_whole_batch(h: Harness) {
    let q = queue("work");
    let bound = limits().max_namespace_jobs;
    enqueue(
        &*h.store,
        &q,
        (1..bound).map(|i| job(&i.to_string())).collect(),
    )
    .await;
    let err = h
        .store
        .jobs_enqueue(&q, vec![job(r#""a""#), job(r#""b""#)], T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NamespaceFull);
    let stats = h.store.queue_stats(&q).await.unwrap();
    assert_eq!(
        stats.counts.get(&JobState::Ready).copied(),
        Some(bound - 1),
        "no part of the batch landed"
    );
    enqueue(&*h.store, &q, vec![job(r#""last""#)]).await;
    let other = QueueRef {
        namespace: Namespace::new("tenant-b").unwrap(),
        queue: q.queue.clone(),
    };
    enqueue(&*h.store, &other, vec![job(r#""elsewhere""#)]).await;
    let leased = lease(&*h.store, &q, 1, T0).await;
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    enqueue(&*h.store, &q, vec![job(r#""room again""#)]).await;
}

pub async fn enqueue_fires_the_ready_signal(h: Harness) {
    let q = queue("work");
    let listener = h.store.ready_signal().listener(&q);
    let woken = listener.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let mut later = job("1");
    later.run_at = at(1000);
    enqueue(&*h.store, &q, vec![later]).await;
    let woken = assert_pending(woken).await;
    enqueue(&*h.store, &q, vec![job("2")]).await;
    assert!(futures_ready(woken).await);
}

/// Leasers parked on a queue wake one per new job, not all for any job: a
/// single enqueue must not send every parked worker to the store.
pub async fn each_ready_job_wakes_one_waiting_leaser(h: Harness) {
    let q = queue("work");
    let listener = h.store.ready_signal().listener(&q);
    let mut parked: Vec<_> = (0..3).map(|_| Box::pin(listener.notified())).collect();
    for leaser in &mut parked {
        leaser.as_mut().enable();
    }
    let mut woken = Vec::new();
    enqueue(&*h.store, &q, vec![job("1")]).await;
    for leaser in &mut parked {
        woken.push(futures_ready(leaser.as_mut()).await);
    }
    assert_eq!(woken.iter().filter(|w| **w).count(), 1, "{woken:?}");
    enqueue(&*h.store, &q, vec![job("2"), job("3")]).await;
    for (leaser, woken) in parked.iter_mut().zip(&mut woken) {
        *woken = *woken || futures_ready(leaser.as_mut()).await;
    }
    assert_eq!(woken, [true; 3], "two more jobs wake the other two");
}

pub async fn maintenance_reports_the_next_deadline(h: Harness) {
    let q = queue("work");
    assert_eq!(h.store.maintenance_run(T0).await.unwrap().next_due, None);
    let mut a = job("1");
    a.run_at = at(5000);
    let mut b = job("2");
    b.run_at = at(3000);
    enqueue(&*h.store, &q, vec![a, b, job("3")]).await;
    assert_eq!(
        h.store.maintenance_run(T0).await.unwrap().next_due,
        Some(at(3000))
    );
    let req = LeaseRequest {
        queue: q.clone(),
        worker_id: "w".into(),
        max_jobs: 1,
        lease_ms: Some(1000),
    };
    h.store.jobs_lease(&req, T0).await.unwrap();
    assert_eq!(
        h.store.maintenance_run(T0).await.unwrap().next_due,
        Some(at(1000))
    );
    let listener = h.store.ready_signal().listener(&q);
    let woken = listener.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let report = h.store.maintenance_run(at(3000)).await.unwrap();
    assert_eq!(report.promoted, 1);
    assert_eq!(report.expired_to_ready, vec![q.clone()]);
    assert_eq!(report.next_due, Some(at(5000)));
    assert!(futures_ready(woken).await, "promotion wakes leasers");
}

pub async fn prune_deletes_finished_jobs_past_retention(h: Harness) {
    let q = queue("work");
    let policy = QueuePolicy {
        retention_ms: Some(1000),
        dead_retention_ms: Some(5000),
        ..Default::default()
    };
    h.store.queue_policy_set(&q, policy, T0).await.unwrap();
    let ids = enqueue(
        &*h.store,
        &q,
        vec![job(r#""done""#), job(r#""dead""#), job(r#""open""#)],
    )
    .await;
    let leased = lease(&*h.store, &q, 2, T0).await;
    ack(&*h.store, leased[0].lease_token, complete(), T0)
        .await
        .unwrap();
    ack(&*h.store, leased[1].lease_token, fail(false), T0)
        .await
        .unwrap();
    assert_eq!(h.store.jobs_prune(at(999)).await.unwrap(), 0);
    assert_eq!(h.store.jobs_prune(at(1000)).await.unwrap(), 1);
    assert_eq!(
        h.store.job_get(&ns(), ids[0]).await.unwrap_err().code,
        ErrorCode::JobNotFound
    );
    assert_eq!(
        h.store.job_get(&ns(), ids[1]).await.unwrap().state,
        JobState::Dead
    );
    assert_eq!(h.store.jobs_prune(at(5000)).await.unwrap(), 1);
    assert_eq!(
        h.store.job_get(&ns(), ids[2]).await.unwrap().state,
        JobState::Ready,
        "unfinished jobs stay"
    );
}

pub async fn batch_ack_answers_each_item(h: Harness) {
    let q = queue("work");
    enqueue(&*h.store, &q, vec![job("1"), job("2")]).await;
    let leased = lease(&*h.store, &q, 2, T0).await;
    let unknown = LeaseToken {
        job: JobId::from_bytes([7; 16]),
        lease_seq: 1,
    };
    let acks = vec![
        Ack {
            token: leased[0].lease_token,
            outcome: complete(),
        },
        Ack {
            token: unknown,
            outcome: complete(),
        },
        Ack {
            token: leased[1].lease_token,
            outcome: fail(true),
        },
        Ack {
            token: leased[0].lease_token,
            outcome: fail(true),
        },
    ];
    let results = h.store.jobs_ack(&ns(), acks, at(1)).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap().state, JobState::Succeeded);
    assert_eq!(
        results[1].as_ref().unwrap_err().code,
        ErrorCode::JobNotFound
    );
    assert_eq!(results[2].as_ref().unwrap().state, JobState::Scheduled);
    assert_eq!(results[2].as_ref().unwrap().run_at, Some(at(1001)));
    assert_eq!(results[3].as_ref().unwrap_err().code, ErrorCode::LeaseLost);
}

pub async fn state_survives_reopen(h: Harness) {
    let q = queue("work");
    let keyed = |payload: &str, key: &str| {
        let mut j = job(payload);
        j.ordering_key = Some(key.into());
        j.idempotency_key = Some(format!("idem-{payload}"));
        j
    };
    let mut scheduled = job(r#""later""#);
    scheduled.run_at = at(5000);
    let ids = enqueue(
        &*h.store,
        &q,
        vec![keyed(r#""k1""#, "k"), keyed(r#""k2""#, "k"), scheduled],
    )
    .await;
    let leased = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(payloads(&leased), [r#""k1""#]);
    h.store
        .queue_policy_set(
            &q,
            QueuePolicy {
                max_attempts: Some(4),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap();
    h.store.close().await;

    let store = (h.reopen)().await;
    assert_eq!(store.queue_policy(&q).await.unwrap().max_attempts, Some(4));
    let again = store
        .jobs_enqueue(&q, vec![keyed(r#""k1""#, "k")], at(1))
        .await
        .unwrap();
    assert_eq!(again[0].id, ids[0], "idempotency keys survive a restart");
    let req = LeaseRequest {
        queue: q.clone(),
        worker_id: "w".into(),
        max_jobs: 10,
        lease_ms: None,
    };
    assert!(
        store.jobs_lease(&req, at(1)).await.unwrap().is_empty(),
        "k2 waits behind leased k1"
    );
    assert_eq!(
        store.maintenance_run(at(1)).await.unwrap().next_due,
        Some(at(5000)),
        "scheduled jobs and leases are rebuilt"
    );
    let done = store
        .jobs_ack(
            &ns(),
            vec![Ack {
                token: leased[0].lease_token,
                outcome: complete(),
            }],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(
        done[0].as_ref().unwrap().state,
        JobState::Succeeded,
        "the lease survives a restart"
    );
    let next = store.jobs_lease(&req, at(2)).await.unwrap();
    assert_eq!(payloads(&next), [r#""k2""#]);
    assert_eq!(next[0].lease_token.lease_seq, 1);
    store.maintenance_run(at(5000)).await.unwrap();
    let later = store.jobs_lease(&req, at(5000)).await.unwrap();
    assert_eq!(payloads(&later), [r#""later""#]);
    store.close().await;
}

pub async fn unknown_jobs_are_not_found(h: Harness) {
    let id = JobId::from_bytes([9; 16]);
    assert_eq!(
        h.store.job_get(&ns(), id).await.unwrap_err().code,
        ErrorCode::JobNotFound
    );
    assert_eq!(
        h.store.job_cancel(&ns(), id, T0).await.unwrap_err().code,
        ErrorCode::JobNotFound
    );
    let token = LeaseToken {
        job: id,
        lease_seq: 1,
    };
    let err = h
        .store
        .job_heartbeat(&ns(), token, None, T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::JobNotFound);
}

pub async fn new_deadlines_wake_maintenance(h: Harness) {
    let q = queue("work");
    let signal = h.store.ready_signal();
    signal.set_next_maintenance(at(60_000));
    let mut later = job("1");
    later.run_at = at(5000);
    enqueue(&*h.store, &q, vec![later]).await;
    let woken = signal.maintenance_woken();
    tokio::pin!(woken);
    assert!(
        futures_ready(woken).await,
        "a job due before the planned wake-up wakes maintenance"
    );

    signal.set_next_maintenance(at(4000));
    enqueue(&*h.store, &q, vec![job("2")]).await;
    let woken = signal.maintenance_woken();
    tokio::pin!(woken);
    let woken = assert_pending(woken).await;
    let req = LeaseRequest {
        queue: q.clone(),
        worker_id: "w".into(),
        max_jobs: 1,
        lease_ms: Some(1000),
    };
    assert_eq!(h.store.jobs_lease(&req, T0).await.unwrap().len(), 1);
    assert!(
        futures_ready(woken).await,
        "a lease expiring before the planned wake-up wakes maintenance"
    );
}

/// Whether a notification was already delivered (polls the future once).
async fn futures_ready<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = fut;
    std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

/// Asserts the notification has not fired yet and hands the future back.
async fn assert_pending<F: Future>(mut fut: Pin<&mut F>) -> Pin<&mut F> {
    let ready =
        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
    assert!(!ready, "woken too early");
    fut
}

#[derive(Clone, Debug)]
enum Op {
    Lease(u32),
    /// Ack the n-th token ever handed out (stale or not).
    Complete(usize),
    Fail(usize, bool),
    Heartbeat(usize),
    Cancel(usize),
    /// Move time and run maintenance.
    Advance(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (1u32..4).prop_map(Op::Lease),
        (0usize..32).prop_map(Op::Complete),
        (0usize..32, any::<bool>()).prop_map(|(n, retry)| Op::Fail(n, retry)),
        (0usize..32).prop_map(Op::Heartbeat),
        (0usize..8).prop_map(Op::Cancel),
        prop_oneof![Just(10u64), Just(1_000), Just(31_000)].prop_map(Op::Advance),
    ]
}

/// Whatever workers and time do: every job is in exactly one state (none is
/// lost), a job is completed at most once, only with the newest token, and no
/// token is handed out twice.
pub fn random_operation_sequences_lose_nothing(
    open: impl Fn() -> Pin<Box<dyn Future<Output = Harness>>>,
) {
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..60))| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = open().await;
            let q = queue("prop");
            let mut jobs: Vec<NewJob> = (0..8).map(|i| job(&i.to_string())).collect();
            jobs[1].ordering_key = Some("k".into());
            jobs[2].ordering_key = Some("k".into());
            jobs[3].max_attempts = 1;
            let ids = enqueue(&*h.store, &q, jobs).await;
            let mut now = T0;
            let mut tokens: Vec<LeaseToken> = Vec::new();
            let mut newest: HashMap<JobId, u64> = HashMap::new();
            let mut completed: HashSet<JobId> = HashSet::new();
            for op in ops {
                match op {
                    Op::Lease(n) => {
                        for leased in lease(&*h.store, &q, n, now).await {
                            prop_assert!(!tokens.contains(&leased.lease_token), "a token handed out twice");
                            prop_assert!(!completed.contains(&leased.id), "a completed job leased again");
                            newest.insert(leased.id, leased.lease_token.lease_seq);
                            tokens.push(leased.lease_token);
                        }
                    }
                    Op::Complete(n) | Op::Fail(n, _) | Op::Heartbeat(n) if n >= tokens.len() => {}
                    Op::Complete(n) => {
                        let token = tokens[n];
                        if ack(&*h.store, token, complete(), now).await.is_ok() {
                            prop_assert!(completed.insert(token.job), "completed twice");
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token completed");
                        }
                    }
                    Op::Fail(n, retry) => {
                        let token = tokens[n];
                        if ack(&*h.store, token, fail(retry), now).await.is_ok() {
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token failed");
                        }
                    }
                    Op::Heartbeat(n) => {
                        let token = tokens[n];
                        if h.store.job_heartbeat(&ns(), token, None, now).await.is_ok() {
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token heartbeat");
                        }
                    }
                    Op::Cancel(n) => {
                        let _ = h.store.job_cancel(&ns(), ids[n], now).await;
                    }
                    Op::Advance(ms) => {
                        now = now.plus_ms(ms);
                        h.store.maintenance_run(now).await.unwrap();
                    }
                }
                let stats = h.store.queue_stats(&q).await.unwrap();
                prop_assert_eq!(stats.counts.values().sum::<u64>(), ids.len() as u64, "a job was lost or doubled");
                prop_assert_eq!(stats.counts.get(&JobState::Succeeded).copied().unwrap_or(0), completed.len() as u64);
            }
            for id in &ids {
                let job = h.store.job_get(&ns(), *id).await.unwrap();
                prop_assert_eq!(job.state == JobState::Succeeded, completed.contains(id));
                prop_assert!(job.attempt <= job.max_attempts);
            }
            h.store.close().await;
            Ok(())
        })?;
    });
}

// ---- workflows and runs ----

fn run_state(status: RunStatus) -> RunState {
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
    }
}

fn new_run(id: u8, workflow: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: JobId::from_bytes([id; 16]),
        workflow: workflow.to_owned(),
        version: 1,
        input: r#"{"n":1}"#.to_owned(),
        state: run_state(RunStatus::Running),
        idempotency_key: key.map(str::to_owned),
    }
}

pub async fn workflow_versions_change_only_with_content(h: Harness) {
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

pub async fn runs_are_created_once_per_idempotency_key(h: Harness) {
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

pub async fn run_updates_are_compare_and_set(h: Harness) {
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
            JobId::from_bytes([9; 16]),
            1,
            &state,
            Vec::new(),
            at(12),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
}

pub async fn runs_list_newest_first_filtered_and_paged(h: Harness) {
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

pub async fn active_runs_span_namespaces(h: Harness) {
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

pub async fn runs_survive_reopen(h: Harness) {
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

pub async fn acks_say_which_jobs_belong_to_runs(h: Harness) {
    let q = queue("steps");
    let (r1, r2) = (RunId::from_bytes([1; 16]), RunId::from_bytes([2; 16]));
    let mut step = job(r#""step""#);
    step.tags.insert(RUN_TAG.to_owned(), r1.to_string());
    let ids = enqueue(&*h.store, &q, vec![step, job(r#""plain""#)]).await;
    let leased = lease(&*h.store, &q, 2, T0).await;
    let acks = leased
        .iter()
        .map(|l| Ack {
            token: l.lease_token,
            outcome: AckOutcome::Complete { result: None },
        })
        .collect();
    let acked = h.store.jobs_ack(&ns(), acks, at(1)).await.unwrap();
    let runs: Vec<(JobId, Option<RunId>, u32)> = acked
        .into_iter()
        .map(|a| {
            let a = a.unwrap();
            (a.id, a.run, a.attempt)
        })
        .collect();
    assert!(runs.contains(&(ids[0], Some(r1), 1)) && runs.contains(&(ids[1], None, 1)));

    let mut step = job(r#""again""#);
    step.tags.insert(RUN_TAG.to_owned(), r2.to_string());
    let id = enqueue(&*h.store, &q, vec![step]).await[0];
    h.store.close().await;
    let store = (h.reopen)().await;
    let cancelled = store.job_cancel(&ns(), id, at(2)).await.unwrap();
    assert_eq!(cancelled.run, Some(r2), "the link survives a restart");

    // A step whose lease expires on its last attempt is reported with its run.
    let r3 = RunId::from_bytes([3; 16]);
    let mut last = job(r#""last""#);
    last.max_attempts = 1;
    last.tags.insert(RUN_TAG.to_owned(), r3.to_string());
    let id = store.jobs_enqueue(&q, vec![last], at(3)).await.unwrap()[0].id;
    let leased = lease(&*store, &q, 1, at(3)).await;
    assert_eq!(leased[0].id, id);
    let report = store.maintenance_run(at(3 + 30_000)).await.unwrap();
    let dead: Vec<(JobId, Option<RunId>, u32, JobState)> = report
        .dead_steps
        .iter()
        .map(|(namespace, a)| {
            assert_eq!(namespace, &ns());
            (a.id, a.run, a.attempt, a.state)
        })
        .collect();
    assert_eq!(dead, vec![(id, Some(r3), 1, JobState::Dead)]);
}

/// A step's job of run `run`, under a chosen id.
fn run_job(q: &QueueRef, id: u8, run: JobId) -> RunJob {
    let mut job = job(&format!("{id}"));
    job.tags.insert(RUN_TAG.to_owned(), run.to_string());
    RunJob {
        queue: q.clone(),
        id: JobId::from_bytes([id; 16]),
        job,
    }
}

pub async fn run_writes_create_their_jobs_or_nothing(h: Harness) {
    let s = &*h.store;
    let q = queue("steps");
    let leased_ids = |jobs: Vec<LeasedJob>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();

    // Created with the run, under the ids the journal names; ready at once.
    let created = new_run(1, "flow", Some("k"));
    let run_id = created.id;
    let (run, _) = s
        .run_create(&ns(), created, vec![run_job(&q, 11, run_id)], T0)
        .await
        .unwrap();
    let got = s.job_get(&ns(), JobId::from_bytes([11; 16])).await.unwrap();
    assert_eq!(got.tags[RUN_TAG], run_id.to_string());
    assert_eq!(
        leased_ids(lease(s, &q, 10, T0).await),
        vec![JobId::from_bytes([11; 16])]
    );

    // A second start under the same key finds the run and creates nothing.
    let (again, found) = s
        .run_create(
            &ns(),
            new_run(2, "flow", Some("k")),
            vec![run_job(&q, 12, run_id)],
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
            vec![run_job(&q, 13, run_id)],
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
            vec![run_job(&q, 14, run_id)],
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
    s.run_create(&ns(), keyless, vec![run_job(&q, 15, keyless_id)], at(4))
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
            JobId::from_bytes([9; 16]),
            1,
            &run.state,
            vec![run_job(&q, 16, run_id)],
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

pub async fn run_writes_respect_the_namespace_bound(h: Harness) {
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
    let two = |a: u8, b: u8, run: JobId| vec![run_job(&q, a, run), run_job(&q, b, run)];
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

pub async fn finished_runs_are_pruned_past_retention(h: Harness) {
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
