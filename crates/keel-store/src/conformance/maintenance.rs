//! Maintenance: promotion, lease expiry, deadlines.

use super::*;

cases![
    expired_leases_return_or_die,
    maintenance_reports_the_next_deadline,
    new_deadlines_wake_maintenance,
];

async fn expired_leases_return_or_die(h: Harness) {
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

async fn maintenance_reports_the_next_deadline(h: Harness) {
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

async fn new_deadlines_wake_maintenance(h: Harness) {
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
