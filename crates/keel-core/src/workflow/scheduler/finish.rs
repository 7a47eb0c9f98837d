//! Ending steps and runs: recording a step's result or stop, failing the
//! run, its compensations, and the final status.

use serde_json::Value;

use super::{Command, Machine};
use crate::Timestamp;
use crate::workflow::expr;
use crate::workflow::run::{Handle, RunStatus, StepRecord, StepStatus};

impl Machine<'_> {
    pub(super) fn record(&mut self, name: &str) -> &mut StepRecord {
        self.state
            .steps
            .entry(name.to_owned())
            .or_insert_with(StepRecord::pending)
    }

    pub(super) fn finish_step(
        &mut self,
        name: &str,
        result: Result<Value, String>,
        now: Timestamp,
    ) {
        let compensation = self.def.steps.get(name).is_some_and(|s| s.compensation);
        let rec = self.record(name);
        rec.handle = None;
        rec.wake_at = None;
        rec.finished_at = Some(now);
        match result {
            Ok(v) => {
                rec.state = StepStatus::Succeeded;
                rec.output = Some(v);
                rec.error = None;
                if !compensation {
                    self.state.completed.push(name.to_owned());
                }
            }
            Err(e) => {
                rec.state = StepStatus::Failed;
                rec.error = Some(e);
            }
        }
    }

    /// Ends an active step (and its items), cancelling the work in flight.
    pub(super) fn stop_step(&mut self, name: &str, to: StepStatus, reason: &str, now: Timestamp) {
        let Some(rec) = self.state.steps.get_mut(name) else {
            return;
        };
        if !rec.state.is_active() {
            return;
        }
        let mut handles: Vec<Handle> = rec.handle.take().into_iter().collect();
        for it in &mut rec.items {
            if it.state == StepStatus::Running {
                handles.extend(it.handle.take());
                it.state = StepStatus::Cancelled;
            } else if it.state == StepStatus::Pending {
                it.state = StepStatus::Cancelled;
            }
        }
        rec.state = to;
        rec.error = Some(reason.to_owned());
        rec.wake_at = None;
        rec.finished_at = Some(now);
        self.commands
            .extend(handles.into_iter().map(Command::Cancel));
    }

    /// A step failed or the run timed out: stop what runs, then undo what
    /// completed, newest first.
    pub(super) fn fail_run(&mut self, error: String, now: Timestamp) {
        let main: Vec<String> = self.def.main_steps().map(|(n, _)| n.clone()).collect();
        for name in &main {
            self.stop_step(
                name,
                StepStatus::Cancelled,
                "cancelled: another step failed",
                now,
            );
        }
        self.state.error = Some(error);
        self.state.compensating = true;
        self.state.compensations = self.compensations_due();
    }

    /// The compensations of the completed steps, newest completion first.
    pub(super) fn compensations_due(&self) -> Vec<String> {
        self.state
            .completed
            .iter()
            .rev()
            .filter_map(|n| self.def.steps.get(n).and_then(|s| s.compensate.clone()))
            .collect()
    }

    pub(super) fn compensate(&mut self, now: Timestamp) -> bool {
        let names: Vec<String> = self
            .def
            .steps
            .iter()
            .filter(|(_, s)| s.compensation)
            .map(|(n, _)| n.clone())
            .collect();
        let mut changed = false;
        for name in &names {
            changed |= self.tick_active(name, now);
        }
        let comp_records = || {
            self.def
                .steps
                .iter()
                .filter(|(_, s)| s.compensation)
                .map(|(n, _)| (n, &self.state.steps[n]))
        };
        if comp_records().any(|(_, r)| r.state == StepStatus::Failed) {
            self.end(RunStatus::Failed);
            return true;
        }
        if comp_records().any(|(_, r)| r.state.is_active()) {
            return changed;
        }
        if self.state.compensations.is_empty() {
            let any_done = comp_records().any(|(_, r)| r.state == StepStatus::Succeeded);
            self.end(if self.state.cancelling {
                RunStatus::Cancelled
            } else if any_done {
                RunStatus::Compensated
            } else {
                RunStatus::Failed
            });
            return true;
        }
        let next = self.state.compensations.remove(0);
        self.start(&next, now);
        true
    }

    pub(super) fn succeed_run(&mut self, _now: Timestamp) {
        let output = match &self.def.output {
            Some(template) => expr::render(template, &self.context(None)),
            None => Ok(Value::Object(
                self.def
                    .main_steps()
                    .filter_map(|(n, _)| {
                        let rec = &self.state.steps[n];
                        (rec.state == StepStatus::Succeeded)
                            .then(|| (n.clone(), rec.output.clone().unwrap_or(Value::Null)))
                    })
                    .collect(),
            )),
        };
        match output {
            Ok(v) => {
                self.state.output = Some(v);
                self.end(RunStatus::Succeeded);
            }
            Err(e) => {
                self.state.error = Some(format!("output: {e}"));
                self.end(RunStatus::Failed);
            }
        }
    }

    pub(super) fn end(&mut self, status: RunStatus) {
        self.state.status = status;
        self.state.compensations.clear();
        self.state.wake_at = None;
        self.commands.push(Command::Finished);
    }
}
