//! Debounce keys: enqueues of a key collapse into the job that waits for its
//! first attempt, until its window closes; every store finds that job from
//! what it keeps durably, so a restart between two enqueues changes nothing.

use super::*;

cases![
    enqueues_of_a_key_collapse_into_one_job_with_the_last_payload,
    a_closed_window_or_a_started_job_opens_a_new_window,
    concurrent_enqueues_of_a_key_make_one_job,
];

fn debounced(payload: &str, key: &str, window_end: Timestamp) -> NewJob {
    let mut j = job(payload);
    j.debounce_key = Some(key.into());
    j.run_at = window_end;
    j
}

async fn enqueue_at(
    store: &dyn Store,
    q: &QueueRef,
    jobs: Vec<NewJob>,
    now: Timestamp,
) -> Vec<crate::Enqueued> {
    store.jobs_enqueue(q, jobs, now).await.unwrap()
}

async fn enqueues_of_a_key_collapse_into_one_job_with_the_last_payload(mut h: Harness) {
    let q = queue("digest");
    let first = enqueue_at(&*h.store, &q, vec![debounced(r#""a""#, "k", at(1000))], T0).await;
    assert_eq!(first[0].state, JobState::Scheduled);
    assert!(!first[0].debounced);
    let id = first[0].id;

    // Survives a restart: the store finds the waiting job on disk.
    h.store.close().await;
    h.store = (h.reopen)().await;
    let second = enqueue_at(
        &*h.store,
        &q,
        vec![debounced(r#""b""#, "k", at(1500))],
        at(500),
    )
    .await;
    assert_eq!((second[0].id, second[0].debounced), (id, true));
    assert_eq!(second[0].state, JobState::Scheduled);

    // In one batch: the later jobs of a key collapse into the first, the
    // last payload wins; another key and another queue are their own jobs.
    let batch = enqueue_at(
        &*h.store,
        &q,
        vec![
            debounced(r#""c""#, "k", at(1600)),
            debounced(r#""x1""#, "other", at(1600)),
            debounced(r#""x2""#, "other", at(1600)),
        ],
        at(600),
    )
    .await;
    assert_eq!((batch[0].id, batch[0].debounced), (id, true));
    assert!(!batch[1].debounced);
    assert_eq!((batch[2].id, batch[2].debounced), (batch[1].id, true));
    let elsewhere = enqueue_at(
        &*h.store,
        &queue("other"),
        vec![debounced("1", "k", at(1600))],
        at(600),
    )
    .await;
    assert!(!elsewhere[0].debounced);
    assert_ne!(elsewhere[0].id, id);

    let job = h.store.job_get(&ns(), id).await.unwrap();
    assert_eq!(job.payload.get(), r#""c""#);
    assert_eq!(job.run_at, at(1000), "the window closes where it opened");
    let other = h.store.job_get(&ns(), batch[1].id).await.unwrap();
    assert_eq!(other.payload.get(), r#""x2""#);

    // Nothing runs before the window closes; then one job, the last payload.
    assert!(lease(&*h.store, &q, 10, at(999)).await.is_empty());
    h.store.maintenance_run(at(1600)).await.unwrap();
    let leased = lease(&*h.store, &q, 10, at(1600)).await;
    assert_eq!(payloads(&leased), [r#""c""#, r#""x2""#]);
}

async fn a_closed_window_or_a_started_job_opens_a_new_window(h: Harness) {
    let q = queue("digest");
    let first = enqueue_at(&*h.store, &q, vec![debounced(r#""a""#, "k", at(1000))], T0).await;
    // The window has closed: the first job keeps its payload and runs, a
    // new enqueue opens a window of its own.
    let late = enqueue_at(
        &*h.store,
        &q,
        vec![debounced(r#""b""#, "k", at(2000))],
        at(1000),
    )
    .await;
    assert!(!late[0].debounced);
    assert_ne!(late[0].id, first[0].id);
    h.store.maintenance_run(at(2000)).await.unwrap();
    let leased = lease(&*h.store, &q, 1, at(2000)).await;
    assert_eq!(payloads(&leased), [r#""a""#]);
    let leased_b = lease(&*h.store, &q, 1, at(2000)).await;
    assert_eq!(payloads(&leased_b), [r#""b""#]);

    // A job that has started (here: failed and waits for its retry) takes
    // no more payloads.
    assert_eq!(
        ack(&*h.store, leased[0].lease_token, fail(true), at(2001)).await,
        Ok(JobState::Scheduled)
    );
    let after = enqueue_at(
        &*h.store,
        &q,
        vec![debounced(r#""c""#, "k", at(3000))],
        at(2002),
    )
    .await;
    assert!(!after[0].debounced);
    assert_ne!(after[0].id, first[0].id);
    let retried = h.store.job_get(&ns(), first[0].id).await.unwrap();
    assert_eq!(retried.payload.get(), r#""a""#);
}

/// Enqueues racing on one key (on PostgreSQL, over separate connections, as
/// from several nodes) find each other: one job, every answer its id.
async fn concurrent_enqueues_of_a_key_make_one_job(h: Harness) {
    let q = queue("digest");
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (store, q) = (h.store.clone(), q.clone());
        racing.spawn(async move {
            let job = debounced(&i.to_string(), "k", at(1000));
            store.jobs_enqueue(&q, vec![job], at(i)).await.unwrap()[0].clone()
        });
    }
    let answers = racing.join_all().await;
    let opened: Vec<_> = answers.iter().filter(|e| !e.debounced).collect();
    assert_eq!(opened.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|e| e.id == opened[0].id));
    h.store.maintenance_run(at(1000)).await.unwrap();
    assert_eq!(lease(&*h.store, &q, 10, at(1000)).await.len(), 1);
}
