//! Owned jobs: the owner is stored with the job, in the owner's own write,
//! and every way the job ends reports it.

use super::*;

cases![
    acks_report_each_jobs_owner,
    the_owner_survives_a_restart,
    an_expired_last_attempt_reports_its_owner,
    a_redriven_job_keeps_its_owner,
];

/// Creates run `run` (by its id byte) with one owned job.
async fn run_with_job(store: &dyn Store, run: u8, job: OwnedJob, now: Timestamp) {
    let (_, dedup) = store
        .run_create(&ns(), runs::new_run(run, "flow", None), vec![job], now)
        .await
        .unwrap();
    assert!(!dedup);
}

async fn acks_report_each_jobs_owner(h: Harness) {
    let q = queue("steps");
    let r1 = RunId::from_bytes([1; 16]);
    run_with_job(&*h.store, 1, owned_job(&q, 11, r1), T0).await;
    let plain = enqueue(&*h.store, &q, vec![job(r#""plain""#)]).await[0];
    let leased = lease(&*h.store, &q, 2, T0).await;
    assert_eq!(leased.len(), 2);
    let acks = leased
        .iter()
        .map(|l| Ack {
            token: l.lease_token,
            outcome: AckOutcome::Complete { result: None },
        })
        .collect();
    let acked = h.store.jobs_ack(&ns(), acks, at(1)).await.unwrap();
    let mut owners: Vec<(JobId, Option<JobOwner>, u32)> = acked
        .into_iter()
        .map(|a| {
            let a = a.unwrap();
            (a.id, a.owner, a.attempt)
        })
        .collect();
    owners.sort_by_key(|(id, ..)| *id);
    let mut expected = vec![
        (JobId::from_bytes([11; 16]), Some(step_of(r1)), 1),
        (plain, None, 1),
    ];
    expected.sort_by_key(|(id, ..)| *id);
    assert_eq!(owners, expected);
}

async fn the_owner_survives_a_restart(h: Harness) {
    let q = queue("steps");
    let r2 = RunId::from_bytes([2; 16]);
    run_with_job(&*h.store, 2, owned_job(&q, 12, r2), T0).await;
    h.store.close().await;
    let store = (h.reopen)().await;
    let cancelled = store
        .job_cancel(&ns(), JobId::from_bytes([12; 16]), at(2))
        .await
        .unwrap();
    assert_eq!(cancelled.owner, Some(step_of(r2)));
}

/// A job whose lease expires on its last attempt is reported with its owner,
/// so that the owner hears it at once.
async fn an_expired_last_attempt_reports_its_owner(h: Harness) {
    let q = queue("steps");
    let r3 = RunId::from_bytes([3; 16]);
    let mut last = owned_job(&q, 13, r3);
    last.job.max_attempts = 1;
    run_with_job(&*h.store, 3, last, at(3)).await;
    let leased = lease(&*h.store, &q, 1, at(3)).await;
    assert_eq!(leased[0].id, JobId::from_bytes([13; 16]));
    let report = h.store.maintenance_run(at(3 + 30_000)).await.unwrap();
    let dead: Vec<(JobId, Option<JobOwner>, u32, JobState)> = report
        .dead_owned
        .iter()
        .map(|(namespace, a)| {
            assert_eq!(namespace, &ns());
            (a.id, a.owner.clone(), a.attempt, a.state)
        })
        .collect();
    assert_eq!(
        dead,
        vec![(leased[0].id, Some(step_of(r3)), 1, JobState::Dead)]
    );
}

/// Redrive brings a dead job back with its owner, on every backend and
/// without a restart: the owner hears the redriven attempt end.
async fn a_redriven_job_keeps_its_owner(h: Harness) {
    let q = queue("steps");
    let r4 = RunId::from_bytes([4; 16]);
    run_with_job(&*h.store, 4, owned_job(&q, 14, r4), T0).await;
    let id = JobId::from_bytes([14; 16]);
    let leased = lease(&*h.store, &q, 1, T0).await;
    assert_eq!(
        ack(&*h.store, leased[0].lease_token, fail(false), at(1)).await,
        Ok(JobState::Dead)
    );
    let moved = h
        .store
        .jobs_redrive(&q, RedriveSelection::Ids(vec![id]), None, at(2))
        .await
        .unwrap();
    assert_eq!(moved, vec![id]);
    let leased = lease(&*h.store, &q, 1, at(2)).await;
    let acked = h
        .store
        .jobs_ack(
            &ns(),
            vec![Ack {
                token: leased[0].lease_token,
                outcome: complete(),
            }],
            at(3),
        )
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!((acked.id, acked.owner), (id, Some(step_of(r4))));
}
