//! The DAG scheduler: a pure, deterministic machine over a run's journal.
//!
//! The driver in the server feeds it what it observed (a job finished, a
//! signal, the time) and carries out the [`Command`]s it returns: start work
//! under an idempotency key, cancel work, wake the run at a time. Because the
//! keys are derived from the run, the step and the run's generation, carrying
//! out a command twice (after a crash, or from two nodes) creates the work once,
//! and a step that completed is never started again: its output is in the
//! journal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{Action, Definition};
use super::expr;
use super::run::{Handle, ParentRef, RunId, RunState, RunStatus, StepRecord, StepStatus};
use crate::{Backoff, Error, ErrorCode, QueueName, Timestamp};

/// What the driver knows about the run besides its journal.
#[derive(Clone, Copy, Debug)]
pub struct RunMeta<'a> {
    pub id: RunId,
    pub workflow: &'a str,
    pub version: u32,
    pub input: &'a Value,
}

/// Work to start; the driver creates it under the command's key.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    Task {
        queue: QueueName,
        payload: Value,
        priority: i16,
        max_attempts: u32,
        backoff: Backoff,
        lease_ms: Option<u64>,
    },
    Http {
        request: HttpRequest,
        max_attempts: u32,
        backoff: Backoff,
    },
    /// A notification to send: the request rendered (the engine gives it
    /// the step's dedup key unless it names one).
    Notify {
        request: Value,
        max_attempts: u32,
        backoff: Backoff,
    },
    Child {
        workflow: String,
        version: Option<u32>,
        input: Value,
    },
}

/// An outbound call, rendered: the payload of the job that makes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The OAuth2 connection the call is made as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Start {
        step: String,
        item: Option<usize>,
        key: String,
        work: Box<Work>,
    },
    Cancel(Handle),
    /// Advance the run again at this time.
    WakeAt(Timestamp),
    /// The run reached a final status (tell its parent, if any).
    Finished,
}

/// What the driver saw of a piece of work.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Progress {
        attempts: u32,
    },
    Done {
        attempts: u32,
        result: Result<Value, String>,
    },
}

/// A fresh journal: every step pending.
pub fn new_run(def: &Definition, now: Timestamp, parent: Option<ParentRef>) -> RunState {
    RunState {
        status: RunStatus::Running,
        generation: 0,
        steps: def
            .steps
            .keys()
            .map(|name| (name.clone(), StepRecord::pending()))
            .collect(),
        signals: BTreeMap::new(),
        completed: Vec::new(),
        compensating: false,
        compensations: Vec::new(),
        cancelling: false,
        output: None,
        error: None,
        deadline: def.timeout_ms.map(|ms| now.plus_ms(ms)),
        wake_at: None,
        parent,
        traceparent: None,
    }
}

pub struct Machine<'a> {
    def: &'a Definition,
    meta: RunMeta<'a>,
    state: RunState,
    commands: Vec<Command>,
    /// The head seq of each topic a `wait_for` event may start waiting on,
    /// read by the driver before this decision (0 when unknown).
    event_heads: BTreeMap<String, u64>,
}

impl<'a> Machine<'a> {
    pub fn new(def: &'a Definition, meta: RunMeta<'a>, state: RunState) -> Self {
        Machine {
            def,
            meta,
            state,
            commands: Vec::new(),
            event_heads: BTreeMap::new(),
        }
    }

    /// Where the topics stand now: a `wait_for` event that starts in this
    /// decision counts only events after its topic's head.
    pub fn with_event_heads(mut self, heads: BTreeMap<String, u64>) -> Self {
        self.event_heads = heads;
        self
    }

    /// An event `seq` of `topic` (the event as expressions see it): each
    /// step waiting for such an event, started before it was published,
    /// whose condition holds, succeeds with it. True when one did.
    pub fn event(&mut self, topic: &str, seq: u64, event: &Value, now: Timestamp) -> bool {
        let waiting: Vec<(String, Option<String>)> = self
            .def
            .steps
            .iter()
            .filter_map(|(name, step)| match &step.action {
                Action::WaitFor {
                    event: Some(wait), ..
                } if wait.topic == topic => Some((name.clone(), wait.condition.clone())),
                _ => None,
            })
            .filter(|(name, _)| {
                self.state.steps.get(name).is_some_and(|rec| {
                    rec.state == StepStatus::Waiting && rec.event_after.is_some_and(|a| seq > a)
                })
            })
            .collect();
        let mut matched = false;
        for (name, condition) in waiting {
            let holds = condition.as_deref().is_none_or(|source| {
                let mut ctx = self.context(None);
                if let Value::Object(map) = &mut ctx {
                    map.insert("event".to_owned(), event.clone());
                }
                expr::eval_condition(expr::condition_source(source), &ctx).unwrap_or(false)
            });
            if holds {
                self.finish_step(&name, Ok(event.clone()), now);
                matched = true;
            }
        }
        matched
    }

    pub fn state(&self) -> &RunState {
        &self.state
    }

    pub fn into_state(self) -> RunState {
        self.state
    }

    /// Work in flight, for the driver to look at: (step, item, handle).
    pub fn open_work(&self) -> Vec<(String, Option<usize>, Handle)> {
        let mut out = Vec::new();
        for (name, rec) in &self.state.steps {
            if !rec.state.is_active() {
                continue;
            }
            if let Some(h) = rec.handle {
                out.push((name.clone(), None, h));
            }
            for (i, item) in rec.items.iter().enumerate() {
                if let (StepStatus::Running, Some(h)) = (item.state, item.handle) {
                    out.push((name.clone(), Some(i), h));
                }
            }
        }
        out
    }

    /// Records the work the driver created for a `Start`.
    pub fn started(&mut self, step: &str, item: Option<usize>, handle: Handle) {
        if let Some(rec) = self.state.steps.get_mut(step) {
            match item {
                None => rec.handle = Some(handle),
                Some(i) => {
                    if let Some(it) = rec.items.get_mut(i) {
                        it.handle = Some(handle);
                    }
                }
            }
        }
    }

    /// The driver could not create the work for good (a bad queue, a full namespace).
    pub fn start_failed(&mut self, step: &str, item: Option<usize>, error: String, now: Timestamp) {
        self.observe(
            step,
            item,
            Outcome::Done {
                attempts: 0,
                result: Err(error),
            },
            now,
        );
    }

    pub fn observe(&mut self, step: &str, item: Option<usize>, outcome: Outcome, now: Timestamp) {
        let Some(def_step) = self.def.steps.get(step) else {
            return;
        };
        let max_attempts = def_step.max_attempts;
        let is_child = match (&def_step.action, item) {
            (Action::Workflow { .. }, None) => true,
            (Action::ForEach { step, .. }, Some(_)) => matches!(**step, Action::Workflow { .. }),
            _ => false,
        };
        let Some(rec) = self.state.steps.get_mut(step) else {
            return;
        };
        if !rec.state.is_active() {
            return;
        }
        match item {
            None => match outcome {
                Outcome::Progress { attempts } => {
                    if !is_child {
                        rec.attempts = attempts;
                    }
                }
                Outcome::Done { attempts, result } => {
                    if !is_child {
                        rec.attempts = rec.attempts.max(attempts);
                    }
                    // Kept where there are failed attempts to show.
                    if result.is_err() || rec.attempts > 1 {
                        rec.last = rec.handle;
                    }
                    rec.handle = None;
                    match result {
                        Err(_) if is_child && rec.attempts < max_attempts => {
                            rec.attempts += 1;
                            self.restart_child(step, None);
                        }
                        result => self.finish_step(step, result, now),
                    }
                }
            },
            Some(i) => {
                let Some(it) = rec.items.get_mut(i) else {
                    return;
                };
                if it.state != StepStatus::Running {
                    return;
                }
                match outcome {
                    Outcome::Progress { attempts } => {
                        if !is_child {
                            it.attempts = attempts;
                        }
                    }
                    Outcome::Done { attempts, result } => {
                        if !is_child {
                            it.attempts = it.attempts.max(attempts);
                        }
                        it.handle = None;
                        match result {
                            Err(_) if is_child && it.attempts < max_attempts => {
                                it.attempts += 1;
                                self.restart_child(step, Some(i));
                            }
                            Ok(v) => {
                                it.state = StepStatus::Succeeded;
                                it.output = Some(v);
                            }
                            Err(e) => {
                                it.state = StepStatus::Failed;
                                it.error = Some(e);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Records a signal; a `wait_for` that waits for it (now or later) succeeds.
    pub fn signal(&mut self, name: &str, payload: Value) -> Result<(), Error> {
        if self.state.status.is_final() {
            return Err(final_error(self.state.status, "signal"));
        }
        self.state.signals.insert(name.to_owned(), payload);
        Ok(())
    }

    /// Stops the run: work in flight is cancelled. With `compensate`, the
    /// completed steps are then undone as after a failure, newest first, and
    /// the run ends `cancelled` once they are (`failed` if one fails);
    /// without, nothing is compensated and the run ends at once. `by` (who
    /// asked) goes into the run's error: `cancelled by ...`.
    pub fn cancel(
        &mut self,
        now: Timestamp,
        compensate: bool,
        by: Option<&str>,
    ) -> Result<(), Error> {
        if self.state.status.is_final() {
            return Err(final_error(self.state.status, "cancel"));
        }
        if compensate && self.state.compensating {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "the run is already compensating; cancel without compensate to stop it",
            ));
        }
        let names: Vec<String> = self.state.steps.keys().cloned().collect();
        for name in names {
            self.stop_step(&name, StepStatus::Cancelled, "the run was cancelled", now);
        }
        self.state.error = Some(match by {
            Some(who) => format!("cancelled by {who}"),
            None => "cancelled".to_owned(),
        });
        if compensate {
            self.state.compensations = self.compensations_due();
            if !self.state.compensations.is_empty() {
                self.state.compensating = true;
                self.state.cancelling = true;
                return Ok(());
            }
        }
        self.state.status = RunStatus::Cancelled;
        self.commands.push(Command::Finished);
        Ok(())
    }

    /// Resumes a failed run from its failed steps; steps that succeeded keep
    /// their outputs and do not run again.
    pub fn retry(&mut self, now: Timestamp) -> Result<(), Error> {
        if self.state.status != RunStatus::Failed {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "only a failed run can be retried; this one is {}",
                    self.state.status.as_str()
                ),
            ));
        }
        let compensated = self.def.steps.iter().any(|(name, s)| {
            s.compensation
                && self.state.steps.get(name).map(|r| r.state) == Some(StepStatus::Succeeded)
        });
        if compensated {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "the run's completed steps were already compensated; start a new run instead",
            ));
        }
        self.state.generation += 1;
        for rec in self.state.steps.values_mut() {
            if matches!(rec.state, StepStatus::Failed | StepStatus::Cancelled) {
                *rec = StepRecord::pending();
            }
        }
        self.state.status = RunStatus::Running;
        self.state.compensating = false;
        self.state.cancelling = false;
        self.state.compensations.clear();
        self.state.error = None;
        self.state.wake_at = None;
        self.state.deadline = self.def.timeout_ms.map(|ms| now.plus_ms(ms));
        Ok(())
    }

    /// Moves the run as far as it can go at `now` and returns what to do.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Command> {
        if self.state.wake_at.is_some_and(|t| t <= now) {
            self.state.wake_at = None;
        }
        while self.pass(now) {}
        if !self.state.status.is_final()
            && let Some(next) = self.next_wake()
            && self.state.wake_at != Some(next)
        {
            self.state.wake_at = Some(next);
            self.commands.push(Command::WakeAt(next));
        }
        std::mem::take(&mut self.commands)
    }

    fn next_wake(&self) -> Option<Timestamp> {
        let steps = self
            .state
            .steps
            .values()
            .filter(|r| r.state.is_active())
            .filter_map(|r| r.wake_at);
        let deadline = self.state.deadline.filter(|_| !self.state.compensating);
        steps.chain(deadline).min()
    }

    /// One round of decisions; true when something changed.
    fn pass(&mut self, now: Timestamp) -> bool {
        if self.state.status.is_final() {
            return false;
        }
        if self.state.compensating {
            return self.compensate(now);
        }
        if let Some(deadline) = self.state.deadline
            && now >= deadline
        {
            self.fail_run("the run timed out".to_owned(), now);
            return true;
        }
        let mut changed = false;
        let main: Vec<String> = self.def.main_steps().map(|(n, _)| n.clone()).collect();
        for name in &main {
            changed |= self.tick_active(name, now);
        }
        if let Some((name, error)) = main.iter().find_map(|n| {
            let rec = &self.state.steps[n];
            (rec.state == StepStatus::Failed)
                .then(|| (n.clone(), rec.error.clone().unwrap_or_default()))
        }) {
            self.fail_run(format!("step {name} failed: {error}"), now);
            return true;
        }
        for name in &main {
            if self.state.steps[name].state == StepStatus::Pending && self.needs_done(name) {
                self.start(name, now);
                changed = true;
            }
        }
        if main.iter().all(|n| {
            matches!(
                self.state.steps[n].state,
                StepStatus::Succeeded | StepStatus::Skipped
            )
        }) {
            self.succeed_run(now);
            return true;
        }
        changed
    }

    fn needs_done(&self, name: &str) -> bool {
        self.def.steps[name].needs.iter().all(|n| {
            matches!(
                self.state.steps.get(n).map(|r| r.state),
                Some(StepStatus::Succeeded | StepStatus::Skipped)
            )
        })
    }

    /// Timers, signals and fan-out progress of an active step.
    fn tick_active(&mut self, name: &str, now: Timestamp) -> bool {
        let rec = &self.state.steps[name];
        if !rec.state.is_active() {
            return false;
        }
        let due = rec.wake_at.is_some_and(|t| t <= now);
        match &self.def.steps[name].action {
            Action::Sleep(_) if due => {
                self.finish_step(name, Ok(Value::Null), now);
                true
            }
            Action::WaitFor {
                event: Some(wait), ..
            } if due => {
                let error = format!("timed out waiting for an event on topic {:?}", wait.topic);
                self.finish_step(name, Err(error), now);
                true
            }
            Action::WaitFor {
                signal: Some(signal),
                ..
            } => {
                if let Some(payload) = self.state.signals.get(signal).cloned() {
                    self.finish_step(name, Ok(payload), now);
                    true
                } else if due {
                    let error = format!("timed out waiting for signal {signal:?}");
                    self.finish_step(name, Err(error), now);
                    true
                } else {
                    false
                }
            }
            _ if due => {
                let ms = self.def.steps[name].timeout_ms.unwrap_or_default();
                self.stop_step(
                    name,
                    StepStatus::Failed,
                    &format!("timed out after {ms} ms"),
                    now,
                );
                true
            }
            Action::ForEach { .. } => self.tick_fan_out(name, now),
            _ => false,
        }
    }
}

fn final_error(status: RunStatus, what: &str) -> Error {
    Error::new(
        ErrorCode::InvalidState,
        format!("cannot {what} a run that is {}", status.as_str()),
    )
}

mod finish;
mod start;
#[cfg(test)]
mod tests;
