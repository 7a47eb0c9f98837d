//! Ordering keys: one job of a key at a time, in enqueue order, and leasing
//! that finds the free keys whatever waits behind the held ones.

use super::*;

cases![
    ordering_keys_run_one_at_a_time_in_order,
    a_lease_finds_free_keys_behind_a_keyed_backlog,
    a_redriven_job_waits_behind_its_keys_holder,
];

async fn ordering_keys_run_one_at_a_time_in_order(h: Harness) {
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

/// With the jobs holding most ordering keys leased, one lease call still finds
/// the jobs holding the others, whatever waits behind them; a key passes to
/// its next job when its holder completes or dies, not when a job waiting
/// behind it is cancelled.
async fn a_lease_finds_free_keys_behind_a_keyed_backlog(h: Harness) {
    let q = queue("keyed");
    let mut jobs = Vec::new();
    for k in 0..6 {
        for i in 0..3 {
            let mut j = job(&format!("\"{k}-{i}\""));
            j.ordering_key = Some(format!("k{k}"));
            jobs.push(j);
        }
    }
    let ids = enqueue(&*h.store, &q, jobs).await;
    let first = lease(&*h.store, &q, 5, T0).await;
    assert_eq!(
        payloads(&first),
        [r#""0-0""#, r#""1-0""#, r#""2-0""#, r#""3-0""#, r#""4-0""#]
    );
    let rest = lease(&*h.store, &q, 5, T0).await;
    assert_eq!(
        payloads(&rest),
        [r#""5-0""#],
        "the one free key, in one call"
    );

    assert_eq!(
        ack(&*h.store, first[0].lease_token, complete(), at(1)).await,
        Ok(JobState::Succeeded)
    );
    assert_eq!(
        payloads(&lease(&*h.store, &q, 5, at(1)).await),
        [r#""0-1""#]
    );

    h.store.job_cancel(&ns(), ids[5], at(2)).await.unwrap();
    assert!(
        lease(&*h.store, &q, 5, at(2)).await.is_empty(),
        "cancelling a waiting job frees no key"
    );
    assert_eq!(
        ack(&*h.store, first[1].lease_token, fail(false), at(3)).await,
        Ok(JobState::Dead)
    );
    assert_eq!(
        payloads(&lease(&*h.store, &q, 5, at(3)).await),
        [r#""1-1""#],
        "a dead holder passes its key on"
    );
}

/// A dead job redriven while a newer job of its key is leased waits for it,
/// though it is older (one job of a key at a time), across a restart too;
/// it runs once the holder is done.
async fn a_redriven_job_waits_behind_its_keys_holder(h: Harness) {
    let q = queue("redrive-keyed");
    let mut a = job(r#""a""#);
    a.ordering_key = Some("k".into());
    let mut b = job(r#""b""#);
    b.ordering_key = Some("k".into());
    let ids = enqueue(&*h.store, &q, vec![a, b]).await;
    let first = lease(&*h.store, &q, 5, T0).await;
    assert_eq!(payloads(&first), [r#""a""#]);
    assert_eq!(
        ack(&*h.store, first[0].lease_token, fail(false), at(1)).await,
        Ok(JobState::Dead)
    );
    let holder = lease(&*h.store, &q, 5, at(1)).await;
    assert_eq!(payloads(&holder), [r#""b""#]);
    let moved = h
        .store
        .jobs_redrive(&q, RedriveSelection::Ids(vec![ids[0]]), None, at(2))
        .await
        .unwrap();
    assert_eq!(moved, vec![ids[0]]);
    assert!(
        lease(&*h.store, &q, 5, at(2)).await.is_empty(),
        "the redriven job waits while the key is held"
    );
    h.store.close().await;
    let store = (h.reopen)().await;
    assert!(
        lease(&*store, &q, 5, at(3)).await.is_empty(),
        "and still after a restart"
    );
    assert_eq!(
        ack(&*store, holder[0].lease_token, complete(), at(4)).await,
        Ok(JobState::Succeeded)
    );
    assert_eq!(payloads(&lease(&*store, &q, 5, at(4)).await), [r#""a""#]);
}
