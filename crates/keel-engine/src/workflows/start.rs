//! Starting runs: a run and the jobs of its first steps in one write (a
//! first step that starts a child run makes the run first, then advances
//! it), child runs as their parents start them, and the ids both take.

use std::sync::{Arc, PoisonError};

use keel_core::workflow::scheduler::new_run;
use keel_core::workflow::{Machine, ParentRef, RunId, RunMeta, RunState};
use keel_core::{Error, JobId, Namespace, Timestamp, TraceParent};
use keel_store::{NewRun, StoredRun};
use serde_json::Value;

use super::{Driver, Hint, Op};
use crate::rates::OwnedCounts;

impl Driver {
    pub(super) fn next_run_id(&self, now: Timestamp) -> RunId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_run(now)
    }

    pub(super) fn next_job_id(&self, now: Timestamp) -> JobId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }

    /// Starts a run of the latest version (or `version`); with an idempotency
    /// key seen before, returns that run and `true`. The run and the jobs of
    /// its first steps are stored in one write.
    pub async fn start(
        self: &Arc<Self>,
        namespace: &Namespace,
        workflow: &str,
        version: Option<u32>,
        input: Value,
        idempotency_key: Option<String>,
        traceparent: Option<TraceParent>,
    ) -> Result<(Arc<StoredRun>, bool), Error> {
        let (version, def) = self.definition(namespace, workflow, version).await?;
        let now = self.clock.now();
        let id = self.next_run_id(now);
        let fresh = || RunState {
            traceparent: traceparent.clone(),
            ..new_run(&def, now, None)
        };
        let meta = RunMeta {
            id,
            workflow,
            version,
            input: &input,
        };
        let heads = self.event_heads(namespace, &def).await?;
        let mut machine = Machine::new(&def, meta, fresh()).with_event_heads(heads);
        // A first step that starts a child run would make the child before
        // its parent exists: that run is stored first and advanced after.
        let decided = self
            .decide(namespace, id, &mut machine, now, &[], false)
            .await?;
        let (state, jobs, later, advance_after) = match decided {
            Some((jobs, later)) => (machine.into_state(), jobs, later, false),
            None => (fresh(), Vec::new(), Vec::new(), true),
        };
        let run = NewRun {
            id,
            workflow: workflow.to_owned(),
            version,
            input: input.to_string(),
            state,
            idempotency_key,
        };
        let counts = OwnedCounts::of(&jobs);
        let (run, deduplicated) = self.runs.run_create(namespace, run, jobs, now).await?;
        if deduplicated {
            return Ok((Arc::new(run), true));
        }
        self.jobs.owned_enqueued(&counts);
        crate::metrics::run_started(namespace, workflow);
        let run = Arc::new(run);
        self.remember(&run);
        self.waits.note(&run, &def);
        if advance_after {
            let run = self
                .advance(namespace, run.id, Hint::Nothing, Op::Advance)
                .await?;
            return Ok((run, false));
        }
        self.carry_out(namespace, run.id, &run.state, later).await;
        Ok((run, false))
    }

    /// Creates a child run, as it starts (it advances on its own after).
    pub(super) async fn create_child(
        &self,
        namespace: &Namespace,
        workflow: &str,
        version: Option<u32>,
        input: Value,
        idempotency_key: String,
        (parent, traceparent): (ParentRef, Option<TraceParent>),
    ) -> Result<StoredRun, Error> {
        let (version, def) = self.definition(namespace, workflow, version).await?;
        let now = self.clock.now();
        let run = NewRun {
            id: self.next_run_id(now),
            workflow: workflow.to_owned(),
            version,
            input: input.to_string(),
            state: RunState {
                traceparent,
                ..new_run(&def, now, Some(parent))
            },
            idempotency_key: Some(idempotency_key),
        };
        let (run, _) = self
            .runs
            .run_create(namespace, run, Vec::new(), now)
            .await?;
        Ok(run)
    }
}
