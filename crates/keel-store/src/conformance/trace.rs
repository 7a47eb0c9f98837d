//! Trace contexts: a job's `traceparent` is stored with it and handed back
//! by the lease and by a read, whichever way the job was written (alone, in
//! a batch, with a run's first steps or with a run's update), and after a
//! reopen; a run's journal keeps its own.

use super::*;

cases![a_jobs_trace_context_comes_back_with_its_lease_and_read];

const CONTEXT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn traced(mut job: NewJob) -> NewJob {
    job.traceparent = keel_core::TraceParent::parse(CONTEXT);
    job
}

fn contexts(jobs: &[LeasedJob]) -> Vec<Option<&str>> {
    jobs.iter()
        .map(|j| j.traceparent.as_ref().map(keel_core::TraceParent::as_str))
        .collect()
}

async fn a_jobs_trace_context_comes_back_with_its_lease_and_read(mut h: Harness) {
    let q = queue("traced");
    let alone = enqueue(&*h.store, &q, vec![traced(job("1"))]).await[0];
    enqueue(&*h.store, &q, vec![traced(job("2")), job("3")]).await;
    let leased = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(payloads(&leased), ["1", "2", "3"]);
    assert_eq!(contexts(&leased), [Some(CONTEXT), Some(CONTEXT), None]);

    let mut run = runs::new_run(9, "flow", None);
    run.state.traceparent = keel_core::TraceParent::parse(CONTEXT);
    let mut first = owned_job(&q, 41, run.id);
    first.job = traced(first.job);
    let (created, _) = h
        .store
        .run_create(&ns(), run, vec![first], T0)
        .await
        .unwrap();
    let mut next = owned_job(&q, 42, created.id);
    next.job = traced(next.job);
    h.store
        .run_update(
            &ns(),
            created.id,
            created.rev,
            &created.state,
            vec![next],
            at(1),
        )
        .await
        .unwrap();
    let leased = lease(&*h.store, &q, 10, at(2)).await;
    assert_eq!(contexts(&leased), [Some(CONTEXT), Some(CONTEXT)]);

    h.store.close().await;
    h.store = (h.reopen)().await;
    let read = h.store.job_get(&ns(), alone).await.unwrap();
    assert_eq!(read.traceparent.as_ref().map(|t| t.as_str()), Some(CONTEXT));
    let run = h.store.run_get(&ns(), created.id).await.unwrap();
    assert_eq!(
        run.state.traceparent.as_ref().map(|t| t.as_str()),
        Some(CONTEXT)
    );
}
