//! Starting steps: deciding a pending step (skip or start), the work it
//! becomes (with its idempotency key), fan-out items, and the context its
//! expressions see.

use serde_json::{Value, json};

use super::{Command, HttpRequest, Machine, Work};
use crate::Timestamp;
use crate::workflow::definition::{Action, HttpSpec, MAX_FAN_OUT, Sleep};
use crate::workflow::expr;
use crate::workflow::run::{ItemRecord, StepStatus};

impl Machine<'_> {
    pub(super) fn tick_fan_out(&mut self, name: &str, now: Timestamp) -> bool {
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
    pub(super) fn start(&mut self, name: &str, now: Timestamp) {
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
            Action::WaitFor {
                timeout_ms, event, ..
            } => {
                let after = event
                    .as_ref()
                    .map(|wait| self.event_heads.get(&wait.topic).copied().unwrap_or(0));
                let rec = self.record(name);
                rec.state = StepStatus::Waiting;
                rec.wake_at = timeout_ms.map(|ms| now.plus_ms(ms));
                rec.event_after = after;
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

    pub(super) fn begin(&mut self, name: &str, now: Timestamp) {
        let rec = self.record(name);
        rec.state = StepStatus::Running;
        rec.started_at = Some(now);
        rec.attempts = 0;
    }

    pub(super) fn restart_child(&mut self, name: &str, item: Option<usize>) {
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
    pub(super) fn work_for(
        &self,
        name: &str,
        action: &Action,
        ctx: &Value,
    ) -> Result<Work, String> {
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
                connection,
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
                    connection: connection
                        .as_ref()
                        .map(|c| expr::render_text(c, ctx))
                        .transpose()
                        .map_err(|e| format!("http.connection: {e}"))?,
                },
                max_attempts: step.max_attempts,
                backoff: step.backoff,
            },
            Action::Notify(body) => Work::Notify {
                request: expr::render(body, ctx).map_err(|e| format!("notify: {e}"))?,
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
    pub(super) fn key(&self, step: &str, item: Option<usize>, attempt: u32) -> String {
        let mut key = format!("{}/{}/{}", self.meta.id, step, self.state.generation);
        if let Some(i) = item {
            key.push_str(&format!("/{i}"));
        }
        if attempt > 1 {
            key.push_str(&format!("/a{attempt}"));
        }
        key
    }

    /// What the expressions of step `name` see; nothing when it has none.
    pub(super) fn context_for(&self, name: &str, item: Option<(&Value, usize)>) -> Value {
        if self.def.steps[name].templated {
            self.context(item)
        } else {
            Value::Null
        }
    }

    /// What expressions see.
    pub(super) fn context(&self, item: Option<(&Value, usize)>) -> Value {
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
