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
use serde_json::{Value, json};

use super::definition::{Action, Definition, HttpSpec, MAX_FAN_OUT, Sleep};
use super::expr;
use super::run::{
    Handle, ItemRecord, ParentRef, RunId, RunState, RunStatus, StepRecord, StepStatus,
};
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
    }
}

pub struct Machine<'a> {
    def: &'a Definition,
    meta: RunMeta<'a>,
    state: RunState,
    commands: Vec<Command>,
}

impl<'a> Machine<'a> {
    pub fn new(def: &'a Definition, meta: RunMeta<'a>, state: RunState) -> Self {
        Machine {
            def,
            meta,
            state,
            commands: Vec::new(),
        }
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
    /// without, nothing is compensated and the run ends at once.
    pub fn cancel(&mut self, now: Timestamp, compensate: bool) -> Result<(), Error> {
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
        self.state.error = Some("cancelled".to_owned());
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
            Action::WaitFor { signal, .. } => {
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

    fn tick_fan_out(&mut self, name: &str, now: Timestamp) -> bool {
        let Action::ForEach {
            max_parallel, step, ..
        } = &self.def.steps[name].action
        else {
            return false;
        };
        let rec = &self.state.steps[name];
        if let Some((i, item)) = rec
            .items
            .iter()
            .enumerate()
            .find(|(_, it)| it.state == StepStatus::Failed)
        {
            let error = format!(
                "item {i} failed: {}",
                item.error.clone().unwrap_or_default()
            );
            self.stop_step(name, StepStatus::Failed, &error, now);
            return true;
        }
        if rec.items.iter().all(|it| it.state == StepStatus::Succeeded) {
            let outputs = rec
                .items
                .iter()
                .map(|it| it.output.clone().unwrap_or(Value::Null))
                .collect();
            self.finish_step(name, Ok(Value::Array(outputs)), now);
            return true;
        }
        let running = rec
            .items
            .iter()
            .filter(|it| it.state == StepStatus::Running)
            .count();
        let free = (*max_parallel as usize).saturating_sub(running);
        let to_start: Vec<usize> = rec
            .items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.state == StepStatus::Pending)
            .map(|(i, _)| i)
            .take(free)
            .collect();
        for i in &to_start {
            let value = self.state.steps[name].items[*i].value.clone();
            let ctx = self.context_for(name, Some((&value, *i)));
            let work = self.work_for(name, step, &ctx);
            let key = self.key(name, Some(*i), 1);
            let Some(it) = self
                .state
                .steps
                .get_mut(name)
                .and_then(|rec| rec.items.get_mut(*i))
            else {
                continue;
            };
            match work {
                Ok(work) => {
                    it.state = StepStatus::Running;
                    it.attempts = u32::from(matches!(work, Work::Child { .. }));
                    self.commands.push(Command::Start {
                        step: name.to_owned(),
                        item: Some(*i),
                        key,
                        work: Box::new(work),
                    });
                }
                Err(e) => {
                    it.state = StepStatus::Failed;
                    it.error = Some(e);
                }
            }
        }
        !to_start.is_empty()
    }

    /// Decides a pending step: skip it, or start it.
    fn start(&mut self, name: &str, now: Timestamp) {
        let step = &self.def.steps[name];
        let ctx = self.context_for(name, None);
        let needs_skipped = step
            .needs
            .iter()
            .any(|n| self.state.steps.get(n).map(|r| r.state) == Some(StepStatus::Skipped));
        let run = match &step.condition {
            Some(cond) => match expr::eval_condition(expr::condition_source(cond), &ctx) {
                Ok(run) => run,
                Err(e) => {
                    self.begin(name, now);
                    self.finish_step(name, Err(format!("if: {e}")), now);
                    return;
                }
            },
            None => !needs_skipped,
        };
        if !run {
            let rec = self.record(name);
            rec.state = StepStatus::Skipped;
            rec.finished_at = Some(now);
            return;
        }
        self.begin(name, now);
        let timeout = step.timeout_ms.map(|ms| now.plus_ms(ms));
        match &step.action {
            Action::Sleep(sleep) => {
                let until = match sleep {
                    Sleep::For(ms) => Ok(now.plus_ms(*ms)),
                    Sleep::Until(template) => expr::render_text(template, &ctx).and_then(|t| {
                        Timestamp::parse_rfc3339(&t)
                            .ok_or_else(|| format!("until: {t:?} is not an RFC 3339 time"))
                    }),
                };
                match until {
                    Ok(t) => {
                        let rec = self.record(name);
                        rec.state = StepStatus::Waiting;
                        rec.wake_at = Some(t);
                    }
                    Err(e) => self.finish_step(name, Err(e), now),
                }
            }
            Action::WaitFor { timeout_ms, .. } => {
                let rec = self.record(name);
                rec.state = StepStatus::Waiting;
                rec.wake_at = timeout_ms.map(|ms| now.plus_ms(ms));
            }
            Action::ForEach { items, .. } => match expr::render(items, &ctx) {
                Ok(Value::Array(values)) if values.len() <= MAX_FAN_OUT => {
                    let rec = self.record(name);
                    rec.state = StepStatus::Running;
                    rec.attempts = 1;
                    rec.wake_at = timeout;
                    rec.items = values
                        .into_iter()
                        .map(|value| ItemRecord {
                            value,
                            state: StepStatus::Pending,
                            attempts: 0,
                            output: None,
                            error: None,
                            handle: None,
                        })
                        .collect();
                }
                Ok(Value::Array(values)) => self.finish_step(
                    name,
                    Err(format!(
                        "for_each: {} items, over the limit of {MAX_FAN_OUT}",
                        values.len()
                    )),
                    now,
                ),
                Ok(other) => self.finish_step(
                    name,
                    Err(format!(
                        "for_each: items must be a list, not {}",
                        kind_of(&other)
                    )),
                    now,
                ),
                Err(e) => self.finish_step(name, Err(format!("for_each: {e}")), now),
            },
            action => match self.work_for(name, action, &ctx) {
                Ok(work) => {
                    let is_child = matches!(work, Work::Child { .. });
                    let key = self.key(name, None, 1);
                    let rec = self.record(name);
                    rec.state = StepStatus::Running;
                    if is_child {
                        rec.attempts = 1;
                        rec.wake_at = timeout;
                    }
                    self.commands.push(Command::Start {
                        step: name.to_owned(),
                        item: None,
                        key,
                        work: Box::new(work),
                    });
                }
                Err(e) => self.finish_step(name, Err(e), now),
            },
        }
    }

    fn begin(&mut self, name: &str, now: Timestamp) {
        let rec = self.record(name);
        rec.state = StepStatus::Running;
        rec.started_at = Some(now);
        rec.attempts = 0;
    }

    fn restart_child(&mut self, name: &str, item: Option<usize>) {
        let action = match (&self.def.steps[name].action, item) {
            (Action::ForEach { step, .. }, Some(_)) => step.as_ref(),
            (action, _) => action,
        };
        let value = item.map(|i| self.state.steps[name].items[i].value.clone());
        let ctx = self.context_for(name, value.as_ref().zip(item));
        let rec = &self.state.steps[name];
        let attempts = match item {
            Some(i) => rec.items[i].attempts,
            None => rec.attempts,
        };
        if let Ok(work) = self.work_for(name, action, &ctx) {
            let key = self.key(name, item, attempts);
            self.commands.push(Command::Start {
                step: name.to_owned(),
                item,
                key,
                work: Box::new(work),
            });
        }
    }

    /// Renders an action into work; errors are the template's.
    fn work_for(&self, name: &str, action: &Action, ctx: &Value) -> Result<Work, String> {
        let step = &self.def.steps[name];
        Ok(match action {
            Action::Task {
                queue,
                input,
                priority,
            } => Work::Task {
                queue: queue.clone(),
                payload: expr::render(input, ctx).map_err(|e| format!("task.input: {e}"))?,
                priority: *priority,
                max_attempts: step.max_attempts,
                backoff: step.backoff,
                lease_ms: step.timeout_ms,
            },
            Action::Http(HttpSpec {
                method,
                url,
                headers,
                body,
            }) => Work::Http {
                request: HttpRequest {
                    method: method.clone(),
                    url: expr::render_text(url, ctx).map_err(|e| format!("http.url: {e}"))?,
                    headers: headers
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), expr::render_text(v, ctx)?)))
                        .collect::<Result<_, String>>()
                        .map_err(|e| format!("http.headers: {e}"))?,
                    body: body
                        .as_ref()
                        .map(|b| expr::render(b, ctx))
                        .transpose()
                        .map_err(|e| format!("http.body: {e}"))?,
                    timeout_ms: step.timeout_ms,
                },
                max_attempts: step.max_attempts,
                backoff: step.backoff,
            },
            Action::Workflow {
                name,
                version,
                input,
            } => Work::Child {
                workflow: name.clone(),
                version: *version,
                input: expr::render(input, ctx).map_err(|e| format!("workflow.input: {e}"))?,
            },
            Action::Sleep(_) | Action::WaitFor { .. } | Action::ForEach { .. } => {
                return Err("this step kind cannot run inside for_each".to_owned());
            }
        })
    }

    /// The idempotency key of one piece of work: the same decision always
    /// makes the same key, a retried run makes new ones.
    fn key(&self, step: &str, item: Option<usize>, attempt: u32) -> String {
        let mut key = format!("{}/{}/{}", self.meta.id, step, self.state.generation);
        if let Some(i) = item {
            key.push_str(&format!("/{i}"));
        }
        if attempt > 1 {
            key.push_str(&format!("/a{attempt}"));
        }
        key
    }

    fn record(&mut self, name: &str) -> &mut StepRecord {
        self.state
            .steps
            .entry(name.to_owned())
            .or_insert_with(StepRecord::pending)
    }

    fn finish_step(&mut self, name: &str, result: Result<Value, String>, now: Timestamp) {
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
    fn stop_step(&mut self, name: &str, to: StepStatus, reason: &str, now: Timestamp) {
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
    fn fail_run(&mut self, error: String, now: Timestamp) {
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
    fn compensations_due(&self) -> Vec<String> {
        self.state
            .completed
            .iter()
            .rev()
            .filter_map(|n| self.def.steps.get(n).and_then(|s| s.compensate.clone()))
            .collect()
    }

    fn compensate(&mut self, now: Timestamp) -> bool {
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

    fn succeed_run(&mut self, _now: Timestamp) {
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

    fn end(&mut self, status: RunStatus) {
        self.state.status = status;
        self.state.compensations.clear();
        self.state.wake_at = None;
        self.commands.push(Command::Finished);
    }

    /// What the expressions of step `name` see; nothing when it has none.
    fn context_for(&self, name: &str, item: Option<(&Value, usize)>) -> Value {
        if self.def.steps[name].templated {
            self.context(item)
        } else {
            Value::Null
        }
    }

    /// What expressions see.
    fn context(&self, item: Option<(&Value, usize)>) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .state
            .steps
            .iter()
            .map(|(name, rec)| {
                (
                    name.clone(),
                    json!({
                        "state": rec.state,
                        "attempts": rec.attempts,
                        "output": rec.output,
                        "error": rec.error,
                    }),
                )
            })
            .collect();
        let mut ctx = json!({
            "input": self.meta.input,
            "steps": steps,
            "run": {
                "id": self.meta.id.to_string(),
                "workflow": self.meta.workflow,
                "version": self.meta.version,
                "generation": self.state.generation,
            },
        });
        if let (Some((value, index)), Value::Object(map)) = (item, &mut ctx) {
            map.insert("item".to_owned(), value.clone());
            map.insert("index".to_owned(), json!(index));
        }
        ctx
    }
}

fn final_error(status: RunStatus, what: &str) -> Error {
    Error::new(
        ErrorCode::InvalidState,
        format!("cannot {what} a run that is {}", status.as_str()),
    )
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
