//! The one validating pass over a parsed definition: every problem is
//! collected with its path (nothing stops at the first), and a valid
//! definition comes out typed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    DEFAULT_STEP_ATTEMPTS, Definition, EventWait, MAX_STEP_NAME, MAX_STEPS, MAX_TIMEOUT_MS,
    Problem, Step,
};
use crate::workflow::expr;
use crate::{Backoff, TopicName};

mod actions;

const HTTP_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const KINDS: [&str; 8] = [
    "task", "handler", "http", "notify", "sleep", "wait_for", "workflow", "for_each",
];
const FAN_OUT_KINDS: [&str; 5] = ["task", "handler", "http", "notify", "workflow"];

#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn object<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            _ => {
                self.problem(path, "must be an object");
                None
            }
        }
    }

    fn unknown_keys(&mut self, path: &str, map: &Map<String, Value>, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    &join(path, key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, path: &str, map: &Map<String, Value>, key: &str) -> Option<String> {
        match map.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.problem(&join(path, key), "must be a string");
                None
            }
        }
    }

    fn required_string(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        key: &str,
    ) -> Option<String> {
        if !map.contains_key(key) {
            self.problem(&join(path, key), "is required");
            return None;
        }
        self.string(path, map, key)
    }

    fn uint(&mut self, path: &str, map: &Map<String, Value>, key: &str, max: u64) -> Option<u64> {
        let value = map.get(key)?;
        match value.as_u64() {
            Some(n) if n <= max => Some(n),
            _ => {
                self.problem(
                    &join(path, key),
                    format!("must be a whole number from 0 to {max}"),
                );
                None
            }
        }
    }

    fn expression(&mut self, path: &str, source: &str, scope: &Scope<'_>) {
        match expr::check(source) {
            Err(e) => self.problem(path, format!("expression {source:?} does not parse: {e}")),
            Ok(refs) => {
                for root in &refs.roots {
                    let allowed = expr::ROOTS.contains(&root.as_str())
                        || (scope.in_fan_out && expr::ITEM_ROOTS.contains(&root.as_str()))
                        || (scope.in_event_wait && root == "event");
                    if !allowed {
                        self.problem(
                            path,
                            format!(
                                "expression {source:?} refers to unknown name {root:?} (known: input, steps, run{})",
                                if scope.in_fan_out { ", item, index" } else { "" }
                            ),
                        );
                    }
                }
                for step in &refs.steps {
                    if !scope.steps.contains(step.as_str()) {
                        self.problem(
                            path,
                            format!("expression {source:?} refers to unknown step {step:?}"),
                        );
                    }
                }
            }
        }
    }

    fn templates(&mut self, path: &str, value: &Value, scope: &Scope<'_>) {
        let mut found = Vec::new();
        if let Err(e) = expr::expressions_in(value, &mut found) {
            self.problem(path, e);
        }
        for e in found {
            self.expression(path, &e, scope);
        }
    }

    pub(super) fn definition(&mut self, value: &Value) -> Option<Definition> {
        let map = self.object("", value)?;
        self.unknown_keys(
            "",
            map,
            &["name", "description", "timeout_ms", "output", "steps"],
        );
        let name = self.required_string("", map, "name");
        if let Some(name) = &name
            && let Err(e) = crate::WorkflowName::new(name)
        {
            self.problem("name", e.message);
        }
        let description = self.string("", map, "description");
        let timeout_ms = self.uint("", map, "timeout_ms", MAX_TIMEOUT_MS);
        let Some(steps_value) = map.get("steps") else {
            self.problem("steps", "is required");
            return None;
        };
        let steps_map = self.object("steps", steps_value)?;
        if steps_map.is_empty() {
            self.problem("steps", "must hold at least one step");
        }
        if steps_map.len() > MAX_STEPS {
            self.problem("steps", format!("at most {MAX_STEPS} steps are allowed"));
        }
        let names: BTreeSet<&str> = steps_map.keys().map(String::as_str).collect();
        let scope = Scope {
            in_event_wait: false,
            steps: &names,
            in_fan_out: false,
        };
        let mut steps = BTreeMap::new();
        for (step_name, step_value) in steps_map {
            let path = format!("steps.{step_name}");
            if !valid_step_name(step_name) {
                self.problem(
                    &path,
                    format!(
                        "step names must be 1 to {MAX_STEP_NAME} characters of a-z, A-Z, 0-9 and '_', not starting with a digit"
                    ),
                );
            }
            if let Some(step) = self.step(&path, step_value, &scope) {
                steps.insert(step_name.clone(), step);
            }
        }
        let output = map.get("output").cloned();
        if let Some(output) = &output {
            self.templates("output", output, &scope);
        }
        self.links(&steps, &names);
        Some(Definition {
            name: name?,
            description,
            timeout_ms,
            output,
            steps,
        })
    }

    fn step(&mut self, path: &str, value: &Value, scope: &Scope<'_>) -> Option<Step> {
        let map = self.object(path, value)?;
        let mut known = vec![
            "needs",
            "if",
            "retry",
            "timeout_ms",
            "compensate",
            "compensation",
        ];
        known.extend(KINDS);
        self.unknown_keys(path, map, &known);
        let needs = match map.get("needs") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        self.problem(&format!("{path}.needs[{i}]"), "must be a step name");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(&join(path, "needs"), "must be a list of step names");
                Vec::new()
            }
        };
        let condition = self.string(path, map, "if");
        if let Some(c) = &condition {
            self.expression(&join(path, "if"), expr::condition_source(c), scope);
        }
        let (max_attempts, backoff) = match map.get("retry") {
            None => (DEFAULT_STEP_ATTEMPTS, Backoff::default()),
            Some(v) => self.retry(&join(path, "retry"), v),
        };
        let timeout_ms = self.uint(path, map, "timeout_ms", MAX_TIMEOUT_MS);
        let compensate = self.string(path, map, "compensate");
        let compensation = match map.get("compensation") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(&join(path, "compensation"), "must be true or false");
                false
            }
        };
        let present: Vec<&str> = KINDS.into_iter().filter(|k| map.contains_key(*k)).collect();
        let templated =
            condition.is_some() || present.iter().any(|kind| mentions_template(&map[*kind]));
        let action = match present.as_slice() {
            [kind] => self.action(&join(path, kind), kind, &map[*kind], scope),
            [] => {
                self.problem(path, format!("a step needs one of: {}", KINDS.join(", ")));
                None
            }
            many => {
                self.problem(
                    path,
                    format!("a step has exactly one kind, not {}", many.join(" and ")),
                );
                None
            }
        };
        Some(Step {
            needs,
            condition,
            max_attempts,
            backoff,
            timeout_ms,
            compensate,
            compensation,
            templated,
            action: action?,
        })
    }

    /// `{topic, if}`: the topic is a valid name; the condition sees `event`
    /// besides what every expression sees.
    fn event_wait(&mut self, path: &str, value: &Value, scope: &Scope<'_>) -> Option<EventWait> {
        let map = self.object(path, value)?;
        self.unknown_keys(path, map, &["topic", "if"]);
        let topic = self.required_string(path, map, "topic");
        if let Some(t) = &topic
            && let Err(e) = TopicName::new(t)
        {
            self.problem(&join(path, "topic"), e.message);
        }
        let condition = self.string(path, map, "if");
        if let Some(source) = &condition {
            let scope = Scope {
                steps: scope.steps,
                in_fan_out: scope.in_fan_out,
                in_event_wait: true,
            };
            self.expression(&join(path, "if"), expr::condition_source(source), &scope);
        }
        Some(EventWait {
            topic: topic?,
            condition,
        })
    }

    fn retry(&mut self, path: &str, value: &Value) -> (u32, Backoff) {
        let defaults = (DEFAULT_STEP_ATTEMPTS, Backoff::default());
        let Some(map) = self.object(path, value) else {
            return defaults;
        };
        self.unknown_keys(path, map, &["max_attempts", "backoff"]);
        let attempts = self
            .uint(
                path,
                map,
                "max_attempts",
                u64::from(crate::policy::MAX_ATTEMPTS_LIMIT),
            )
            .unwrap_or(u64::from(DEFAULT_STEP_ATTEMPTS)) as u32;
        if attempts == 0 {
            self.problem(&join(path, "max_attempts"), "must be at least 1");
        }
        let backoff = match map.get("backoff") {
            None => Backoff::default(),
            Some(v) => match serde_json::from_value::<Backoff>(v.clone()) {
                Ok(b) => match b.validate() {
                    Ok(()) => b,
                    Err(e) => {
                        self.problem(&join(path, "backoff"), e.message);
                        Backoff::default()
                    }
                },
                Err(e) => {
                    self.problem(&join(path, "backoff"), e.to_string());
                    Backoff::default()
                }
            },
        };
        (attempts.max(1), backoff)
    }

    /// `needs` and `compensate` point at real steps of the right kind, and the
    /// DAG has no cycle.
    fn links(&mut self, steps: &BTreeMap<String, Step>, names: &BTreeSet<&str>) {
        let mut compensated_by: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, step) in steps {
            let path = format!("steps.{name}");
            for (i, need) in step.needs.iter().enumerate() {
                let need_path = format!("{path}.needs[{i}]");
                match steps.get(need) {
                    // A step with problems of its own was reported already.
                    None if names.contains(need.as_str()) => {}
                    None => self.problem(&need_path, format!("unknown step {need:?}")),
                    Some(_) if need == name => {
                        self.problem(&need_path, "a step cannot need itself");
                    }
                    Some(target) if target.compensation => self.problem(
                        &need_path,
                        format!("{need:?} is a compensation step and never runs in the DAG"),
                    ),
                    Some(_) => {}
                }
            }
            if step.compensation && !step.needs.is_empty() {
                self.problem(
                    &join(&path, "needs"),
                    "a compensation step runs on its own; it has no needs",
                );
            }
            if let Some(target) = &step.compensate {
                let cpath = join(&path, "compensate");
                match steps.get(target) {
                    None if names.contains(target.as_str()) => {}
                    None => self.problem(&cpath, format!("unknown step {target:?}")),
                    Some(t) if !t.compensation => self.problem(
                        &cpath,
                        format!("{target:?} must be marked `compensation: true`"),
                    ),
                    Some(_) => {
                        if step.compensation {
                            self.problem(
                                &cpath,
                                "a compensation step cannot have its own compensation",
                            );
                        }
                        if let Some(other) = compensated_by.insert(target, name) {
                            self.problem(
                                &cpath,
                                format!("{target:?} already compensates {other:?}; give each step its own"),
                            );
                        }
                    }
                }
            }
        }
        if let Some(cycle) = find_cycle(steps) {
            self.problem(
                "steps",
                format!("the steps form a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
}

struct Scope<'a> {
    steps: &'a BTreeSet<&'a str>,
    in_fan_out: bool,
    /// In a `wait_for` event condition, which also sees `event`.
    in_event_wait: bool,
}

const SIGNAL_RULE: &str = "signal names are 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' or '.'";

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STEP_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A cycle among `needs`, as the path that closes it.
fn find_cycle(steps: &BTreeMap<String, Step>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        steps: &'a BTreeMap<String, Step>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Open => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                let mut cycle: Vec<String> =
                    stack[start..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Open);
        stack.push(name);
        if let Some(step) = steps.get(name) {
            for need in &step.needs {
                if steps.contains_key(need)
                    && let Some(cycle) = visit(need, steps, marks, stack)
                {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in steps.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(name, steps, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

/// Whether a `${{` appears in any string or key of `value`.
fn mentions_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("${{"),
        Value::Array(items) => items.iter().any(mentions_template),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains("${{") || mentions_template(v)),
        _ => false,
    }
}
