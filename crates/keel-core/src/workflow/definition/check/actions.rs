//! The checks of each step kind's action (`task`, `http`, `notify`,
//! `sleep`, `wait_for`, `workflow`, `for_each`), one method a kind, behind
//! the one dispatch [`Checker::action`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::{
    Action, DEFAULT_MAX_PARALLEL, HttpSpec, MAX_FAN_OUT, MAX_TIMEOUT_MS, Sleep, valid_signal,
};
use super::{Checker, FAN_OUT_KINDS, HTTP_METHODS, SIGNAL_RULE, Scope, join};
use crate::QueueName;

/// What a `notify` step may say: a notification request's fields.
const NOTIFY_KEYS: &[&str] = &[
    "template",
    "subject",
    "text",
    "html",
    "channels",
    "channel",
    "to",
    "data",
    "category",
    "critical",
    "dedup_key",
    "send_at",
];

impl Checker {
    /// The action of a step of `kind` at `path`.
    pub(super) fn action(
        &mut self,
        path: &str,
        kind: &str,
        value: &Value,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        let map = self.object(path, value)?;
        match kind {
            "task" => self.task(path, map, scope),
            "handler" => self.handler(path, map, scope),
            "http" => self.http(path, map, scope),
            "notify" => self.notify(path, map, scope),
            "sleep" => self.sleep(path, map, scope),
            "wait_for" => self.wait_for(path, map, scope),
            "workflow" => self.child_workflow(path, map, scope),
            "for_each" => self.for_each(path, map, scope),
            _ => None,
        }
    }

    /// A job on the user's queue.
    fn task(&mut self, path: &str, map: &Map<String, Value>, scope: &Scope<'_>) -> Option<Action> {
        self.unknown_keys(path, map, &["queue", "input", "priority"]);
        let queue = self.required_string(path, map, "queue");
        let queue = queue.and_then(|q| match QueueName::new(&q) {
            Ok(q) => Some(q),
            Err(e) => {
                self.problem(&join(path, "queue"), e.message);
                None
            }
        });
        let input = map.get("input").cloned().unwrap_or(Value::Null);
        self.templates(&join(path, "input"), &input, scope);
        let priority = match map.get("priority") {
            None => 0,
            Some(v) => match v.as_i64() {
                Some(p)
                    if (crate::limits::MIN_PRIORITY..=crate::limits::MAX_PRIORITY).contains(&p) =>
                {
                    p as i16
                }
                _ => {
                    self.problem(
                        &join(path, "priority"),
                        "must be a whole number from -100 to 100",
                    );
                    0
                }
            },
        };
        Some(Action::Task {
            queue: queue?,
            input,
            priority,
        })
    }

    /// A run of a handler Keel keeps: a task on the handler's own queue
    /// (`keel.handler.{name}`), which the handler runner works; its result
    /// is the step's output.
    fn handler(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        self.unknown_keys(path, map, &["name", "input"]);
        let name = self.required_string(path, map, "name")?;
        let queue = match crate::HandlerName::new(&name)
            .and_then(|h| QueueName::new(&format!("keel.handler.{h}")))
        {
            Ok(q) => q,
            Err(e) => {
                self.problem(&join(path, "name"), e.message);
                return None;
            }
        };
        let input = map.get("input").cloned().unwrap_or(Value::Null);
        self.templates(&join(path, "input"), &input, scope);
        Some(Action::Task {
            queue,
            input,
            priority: 0,
        })
    }

    /// A call Keel makes itself.
    fn http(&mut self, path: &str, map: &Map<String, Value>, scope: &Scope<'_>) -> Option<Action> {
        self.unknown_keys(
            path,
            map,
            &["method", "url", "headers", "body", "connection"],
        );
        let method = self
            .string(path, map, "method")
            .unwrap_or_else(|| "POST".to_owned())
            .to_uppercase();
        if !HTTP_METHODS.contains(&method.as_str()) {
            self.problem(
                &join(path, "method"),
                format!("must be one of {}", HTTP_METHODS.join(", ")),
            );
        }
        let url = self.required_string(path, map, "url");
        if let Some(url) = &url {
            let templated = url.trim_start().starts_with("${{");
            if !(templated || url.starts_with("http://") || url.starts_with("https://")) {
                self.problem(&join(path, "url"), "must start with http:// or https://");
            }
            self.templates(&join(path, "url"), &Value::String(url.clone()), scope);
        }
        let mut headers = BTreeMap::new();
        if let Some(h) = map.get("headers")
            && let Some(hmap) = self.object(&join(path, "headers"), h)
        {
            for (k, v) in hmap {
                match v {
                    Value::String(s) => {
                        self.templates(&join(&join(path, "headers"), k), v, scope);
                        headers.insert(k.clone(), s.clone());
                    }
                    _ => self.problem(&join(&join(path, "headers"), k), "must be a string"),
                }
            }
        }
        let body = map.get("body").cloned();
        if let Some(b) = &body {
            self.templates(&join(path, "body"), b, scope);
        }
        let connection = self.string(path, map, "connection");
        if let Some(name) = &connection {
            let at = join(path, "connection");
            if name.contains("${{") {
                self.templates(&at, &Value::String(name.clone()), scope);
            } else if let Err(e) = crate::ConnectionName::new(name) {
                self.problem(&at, e.message);
            }
            if headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
            {
                self.problem(
                    &at,
                    "a call as a connection carries its Authorization header; set none",
                );
            }
        }
        Some(Action::Http(HttpSpec {
            method,
            url: url?,
            headers,
            body,
            connection,
        }))
    }

    /// A notification Keel sends (`POST .../notifications`'s body, each
    /// value a template); what the rendered body must be is checked when it
    /// is sent, and a body that is not a notification fails the step.
    fn notify(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        self.unknown_keys(path, map, NOTIFY_KEYS);
        if !map.contains_key("to") {
            self.problem(&join(path, "to"), "is required");
        }
        if !map.contains_key("channel") && !map.contains_key("channels") {
            self.problem(path, "give channel or channels");
        }
        let body = Value::Object(map.clone());
        self.templates(path, &body, scope);
        Some(Action::Notify(body))
    }

    /// A timer: a duration or a time.
    fn sleep(&mut self, path: &str, map: &Map<String, Value>, scope: &Scope<'_>) -> Option<Action> {
        self.unknown_keys(path, map, &["duration_ms", "until"]);
        let duration = self.uint(path, map, "duration_ms", MAX_TIMEOUT_MS);
        let until = self.string(path, map, "until");
        match (duration, until) {
            (Some(ms), None) => Some(Action::Sleep(Sleep::For(ms))),
            (None, Some(until)) => {
                self.templates(&join(path, "until"), &Value::String(until.clone()), scope);
                Some(Action::Sleep(Sleep::Until(until)))
            }
            _ => {
                self.problem(path, "give exactly one of duration_ms or until");
                None
            }
        }
    }

    /// A signal or an event, with an optional timeout.
    fn wait_for(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        self.unknown_keys(path, map, &["signal", "event", "timeout_ms"]);
        let signal = self.string(path, map, "signal");
        if let Some(s) = &signal
            && !valid_signal(s)
        {
            self.problem(&join(path, "signal"), SIGNAL_RULE);
        }
        let event = map
            .get("event")
            .and_then(|v| self.event_wait(&join(path, "event"), v, scope));
        if signal.is_some() == map.contains_key("event") {
            self.problem(path, "give exactly one of signal or event");
            return None;
        }
        let timeout_ms = self.uint(path, map, "timeout_ms", MAX_TIMEOUT_MS);
        if signal.is_none() && event.is_none() {
            return None;
        }
        Some(Action::WaitFor {
            signal,
            event,
            timeout_ms,
        })
    }

    /// A child run.
    fn child_workflow(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        self.unknown_keys(path, map, &["name", "version", "input"]);
        let name = self.required_string(path, map, "name");
        let version = self
            .uint(path, map, "version", u64::from(u32::MAX))
            .map(|v| v as u32);
        let input = map.get("input").cloned().unwrap_or(Value::Null);
        self.templates(&join(path, "input"), &input, scope);
        Some(Action::Workflow {
            name: name?,
            version,
            input,
        })
    }

    /// A fan-out of one inner step (task, http or workflow) over a list.
    fn for_each(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        self.unknown_keys(path, map, &["items", "max_parallel", "step"]);
        let items = match map.get("items") {
            None => {
                self.problem(&join(path, "items"), "is required");
                None
            }
            Some(v @ (Value::Array(_) | Value::String(_))) => {
                self.templates(&join(path, "items"), v, scope);
                Some(v.clone())
            }
            Some(_) => {
                self.problem(&join(path, "items"), "must be a list or an expression");
                None
            }
        };
        let max_parallel = self
            .uint(path, map, "max_parallel", MAX_FAN_OUT as u64)
            .map_or(DEFAULT_MAX_PARALLEL, |n| n as u32);
        if max_parallel == 0 {
            self.problem(&join(path, "max_parallel"), "must be at least 1");
        }
        let step_path = join(path, "step");
        let inner = map.get("step").and_then(|v| self.object(&step_path, v));
        let inner_scope = Scope {
            in_event_wait: false,
            steps: scope.steps,
            in_fan_out: true,
        };
        let step = match inner {
            None => {
                if !map.contains_key("step") {
                    self.problem(&step_path, "is required");
                }
                None
            }
            Some(inner) => {
                self.unknown_keys(&step_path, inner, &FAN_OUT_KINDS);
                let kinds: Vec<&str> = FAN_OUT_KINDS
                    .into_iter()
                    .filter(|k| inner.contains_key(*k))
                    .collect();
                match kinds.as_slice() {
                    [kind] => {
                        self.action(&join(&step_path, kind), kind, &inner[*kind], &inner_scope)
                    }
                    _ => {
                        self.problem(
                            &step_path,
                            format!("give exactly one of: {}", FAN_OUT_KINDS.join(", ")),
                        );
                        None
                    }
                }
            }
        };
        Some(Action::ForEach {
            items: items?,
            max_parallel: max_parallel.max(1),
            step: Box::new(step?),
        })
    }
}
