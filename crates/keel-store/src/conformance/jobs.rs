//! Jobs: enqueue, lease, ack, heartbeat, cancel, read, redrive, prune.

use super::*;

cases![
    enqueue_then_get,
    lease_orders_by_priority_then_run_at_then_fifo,
    lease_is_scoped_to_its_queue,
    complete_is_fenced_by_the_lease_token,
    fail_backs_off_then_dies,
    heartbeat_extends_the_lease,
    cancel_applies_to_unfinished_jobs,
    idempotency_keys_dedupe_within_the_window,
    redrive_resets_dead_jobs,
    list_is_newest_first_filtered_and_paged,
    namespace_bound_refuses_whole_batch,
    enqueue_fires_the_ready_signal,
    each_ready_job_wakes_one_waiting_leaser,
    prune_deletes_finished_jobs_past_retention,
    batch_ack_answers_each_item,
    state_survives_reopen,
    unknown_jobs_are_not_found,
    a_full_disk_refuses_writes_with_507_and_loses_nothing,
    reads_answer_while_a_full_disk_refuses_the_writes_beside_them,
];

async fn enqueue_then_get(h: Harness) {
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

async fn lease_orders_by_priority_then_run_at_then_fifo(h: Harness) {
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

async fn lease_is_scoped_to_its_queue(h: Harness) {
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

async fn complete_is_fenced_by_the_lease_token(h: Harness) {
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

async fn fail_backs_off_then_dies(h: Harness) {
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

async fn heartbeat_extends_the_lease(h: Harness) {
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

async fn cancel_applies_to_unfinished_jobs(h: Harness) {
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

async fn idempotency_keys_dedupe_within_the_window(h: Harness) {
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

async fn redrive_resets_dead_jobs(h: Harness) {
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

async fn list_is_newest_first_filtered_and_paged(h: Harness) {
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

async fn namespace_bound_refuses_whole_batch(h: Harness) {
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
    assert_eq!(
        err,
        keel_core::Error::namespace_full("default", bound + 1, bound),
        "one wording on every backend"
    );
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

async fn enqueue_fires_the_ready_signal(h: Harness) {
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
async fn each_ready_job_wakes_one_waiting_leaser(h: Harness) {
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

async fn prune_deletes_finished_jobs_past_retention(h: Harness) {
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

async fn batch_ack_answers_each_item(h: Harness) {
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

async fn state_survives_reopen(h: Harness) {
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
    assert_eq!(next[0].attempt, 1);
    store.maintenance_run(at(5000)).await.unwrap();
    let later = store.jobs_lease(&req, at(5000)).await.unwrap();
    assert_eq!(payloads(&later), [r#""later""#]);
    store.close().await;
}

async fn unknown_jobs_are_not_found(h: Harness) {
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

/// Storage that runs out refuses the write that does not fit with 507
/// `storage_full`, whole (no part of a batch lands), keeps everything it
/// acknowledged before, and takes writes again once there is room.
async fn a_full_disk_refuses_writes_with_507_and_loses_nothing(h: Harness) {
    let Some(fill) = &h.fill_storage else {
        return;
    };
    let q = queue("disk");
    let kept = enqueue(&*h.store, &q, vec![job("1"), job("2")]).await;
    fill(true).await;
    let big = format!("\"{}\"", "x".repeat(64 * 1024));
    let mut refused = None;
    for _ in 0..64 {
        let batch = (0..8).map(|_| job(&big)).collect();
        if let Err(e) = h.store.jobs_enqueue(&q, batch, T0).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("a full disk refuses a write");
    assert_eq!(refused.code, ErrorCode::StorageFull, "{refused:?}");
    assert_eq!(refused.code.http_status(), 507);
    let stats = h.store.queue_stats(&q).await.unwrap();
    let ready = stats.counts.get(&JobState::Ready).copied().unwrap_or(0);
    assert_eq!(
        ready % 8,
        2,
        "whole batches only, and the first two kept: {ready}"
    );
    for id in &kept {
        assert_eq!(
            h.store.job_get(&ns(), *id).await.unwrap().state,
            JobState::Ready
        );
    }
    fill(false).await;
    enqueue(&*h.store, &q, vec![job(r#""after""#)]).await;
}

/// A full disk refuses writes, never the reads beside them: a read of a
/// queue's counts that joins the commit of a refused write still answers,
/// from what is stored. Found by `scripts/chaos disk-full`: the embedded
/// store answered such reads 507.
async fn reads_answer_while_a_full_disk_refuses_the_writes_beside_them(h: Harness) {
    let Some(fill) = &h.fill_storage else {
        return;
    };
    let q = queue("full-reads");
    enqueue(&*h.store, &q, vec![job("1")]).await;
    fill(true).await;
    let big = format!("\"{}\"", "x".repeat(64 * 1024));
    let mut calls = Vec::new();
    for i in 0..64 {
        let (store, q, big) = (h.store.clone(), q.clone(), big.clone());
        calls.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let batch = (0..8).map(|_| job(&big)).collect();
                store
                    .jobs_enqueue(&q, batch, T0)
                    .await
                    .err()
                    .map(|e| e.code)
            } else {
                let stats = store.queue_stats(&q).await.unwrap();
                assert!(stats.counts.get(&JobState::Ready).copied().unwrap_or(0) >= 1);
                None
            }
        }));
    }
    let mut refused = 0;
    for call in calls {
        if let Some(code) = call.await.unwrap() {
            assert_eq!(code, ErrorCode::StorageFull);
            refused += 1;
        }
    }
    assert!(refused > 0, "the disk was full");
    fill(false).await;
}
