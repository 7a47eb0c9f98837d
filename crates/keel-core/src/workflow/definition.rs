//! Workflow definitions: parsed from YAML or JSON and validated in one pass that
//! reports every problem with its path, so a user fixes a file in one round.
//!
//! The stored form of a definition is its canonical JSON (keys sorted, no
//! whitespace): the same content written as YAML or JSON, in any order, is the
//! same version.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::expr;
use crate::{Backoff, QueueName};

/// Most steps one definition may hold.
pub const MAX_STEPS: usize = 200;
/// Longest step or signal name.
pub const MAX_STEP_NAME: usize = 64;
/// Most items one `for_each` may fan out to.
pub const MAX_FAN_OUT: usize = 10_000;
/// Fan-out width when `max_parallel` is not given.
pub const DEFAULT_MAX_PARALLEL: u32 = 10;
/// A step runs once unless its `retry` says otherwise.
pub const DEFAULT_STEP_ATTEMPTS: u32 = 1;

const HTTP_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const KINDS: [&str; 6] = ["task", "http", "sleep", "wait_for", "workflow", "for_each"];
const FAN_OUT_KINDS: [&str; 3] = ["task", "http", "workflow"];

/// One thing wrong with a definition, at a path like `steps.charge.needs[0]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: String,
    pub description: Option<String>,
    /// The whole run fails (and compensates) when it runs longer.
    pub timeout_ms: Option<u64>,
    /// The run's output; by default an object of every step's output.
    pub output: Option<Value>,
    pub steps: BTreeMap<String, Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub needs: Vec<String>,
    /// `if`: a bare expression.
    pub condition: Option<String>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// A task's lease per attempt, an HTTP call's timeout per attempt, or the
    /// deadline of a child run or fan-out.
    pub timeout_ms: Option<u64>,
    /// The compensation step that undoes this one.
    pub compensate: Option<String>,
    /// Runs only as another step's compensation, never as part of the DAG.
    pub compensation: bool,
    /// It has an `if` or a `${{ }}` somewhere: only then do its expressions
    /// need the run's context built.
    pub templated: bool,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Task {
        queue: QueueName,
        input: Value,
        priority: i16,
    },
    Http(HttpSpec),
    Sleep(Sleep),
    WaitFor {
        signal: String,
        timeout_ms: Option<u64>,
    },
    Workflow {
        name: String,
        version: Option<u32>,
        input: Value,
    },
    ForEach {
        /// An array, or a template that evaluates to one.
        items: Value,
        max_parallel: u32,
        step: Box<Action>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpSpec {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Sleep {
    For(u64),
    /// A template for an RFC 3339 time.
    Until(String),
}

/// The source format of a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Parses a source text into JSON; YAML is a superset, so `Yaml` reads both.
pub fn parse_source(text: &str, format: Format) -> Result<Value, Vec<Problem>> {
    let parsed = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|message| {
        vec![Problem {
            path: String::new(),
            message: format!("not valid {format:?}: {message}").to_lowercase(),
        }]
    })
}

/// The stored form: keys sorted, no whitespace.
pub fn canonical(value: &Value) -> String {
    value.to_string()
}

impl Definition {
    /// Validates a parsed definition, reporting every problem at once.
    pub fn from_value(value: &Value) -> Result<Definition, Vec<Problem>> {
        let mut c = Checker::default();
        let def = c.definition(value);
        match def {
            Some(def) if c.problems.is_empty() => Ok(def),
            _ => Err(c.problems),
        }
    }

    /// Steps of the DAG, not compensations.
    pub fn main_steps(&self) -> impl Iterator<Item = (&String, &Step)> {
        self.steps.iter().filter(|(_, s)| !s.compensation)
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
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
                        || (scope.in_fan_out && expr::ITEM_ROOTS.contains(&root.as_str()));
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

    fn definition(&mut self, value: &Value) -> Option<Definition> {
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

    fn action(
        &mut self,
        path: &str,
        kind: &str,
        value: &Value,
        scope: &Scope<'_>,
    ) -> Option<Action> {
        let map = self.object(path, value)?;
        match kind {
            "task" => {
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
                            if (crate::limits::MIN_PRIORITY..=crate::limits::MAX_PRIORITY)
                                .contains(&p) =>
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
            "http" => {
                self.unknown_keys(path, map, &["method", "url", "headers", "body"]);
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
                Some(Action::Http(HttpSpec {
                    method,
                    url: url?,
                    headers,
                    body,
                }))
            }
            "sleep" => {
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
            "wait_for" => {
                self.unknown_keys(path, map, &["signal", "timeout_ms"]);
                let signal = self.required_string(path, map, "signal");
                if let Some(s) = &signal
                    && !valid_signal(s)
                {
                    self.problem(&join(path, "signal"), SIGNAL_RULE);
                }
                let timeout_ms = self.uint(path, map, "timeout_ms", MAX_TIMEOUT_MS);
                Some(Action::WaitFor {
                    signal: signal?,
                    timeout_ms,
                })
            }
            "workflow" => {
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
            "for_each" => {
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
                            [kind] => self.action(
                                &join(&step_path, kind),
                                kind,
                                &inner[*kind],
                                &inner_scope,
                            ),
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
            _ => None,
        }
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
}

/// Upper bound on any duration in a definition: ten years.
pub const MAX_TIMEOUT_MS: u64 = 10 * 365 * 24 * 3_600_000;

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

/// Signal names travel in URLs.
pub fn valid_signal(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STEP_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let value = parse_source(yaml, Format::Yaml).expect("yaml");
        match Definition::from_value(&value) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let found = problems(
            r#"
name: w
colour: blue
steps:
  a: { needs: [ghost], task: { queue: q, input: "${{ steps.nobody.output }}" }, compensate: b }
  b: { needs: [c], sleep: { duration_ms: 10 } }
  c: { needs: [b], task: { queue: q } }
  f: { task: { queue: "bad queue" } }
  d: { if: "input.x ==", wait_for: { timeout_ms: 5 } }
  e: { task: { queue: q }, http: { url: "https://x" } }
"#,
        );
        let expected = [
            "colour: unknown key",
            "steps.a.task.input: expression \"steps.nobody.output\" refers to unknown step \"nobody\"",
            "steps.f.task.queue: queue name",
            "steps.d.if: expression \"input.x ==\" does not parse",
            "steps.d.wait_for.signal: is required",
            "steps.e: a step has exactly one kind, not task and http",
            "steps.a.needs[0]: unknown step \"ghost\"",
            "steps.a.compensate: \"b\" must be marked `compensation: true`",
            "steps: the steps form a cycle: b -> c -> b",
        ];
        for e in expected {
            assert!(
                found.iter().any(|f| f.starts_with(e)),
                "missing {e:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn json_and_yaml_of_the_same_content_are_one_canonical_form() {
        let yaml =
            parse_source("name: w\nsteps:\n  a: {task: {queue: q}}\n", Format::Yaml).expect("yaml");
        let json = parse_source(
            r#"{"steps":{"a":{"task":{"queue":"q"}}},"name":"w"}"#,
            Format::Json,
        )
        .expect("json");
        assert_eq!(canonical(&yaml), canonical(&json));
        assert!(Definition::from_value(&json).is_ok());
    }

    #[test]
    fn malformed_sources_are_one_problem_not_a_panic() {
        assert_eq!(parse_source("{", Format::Json).unwrap_err().len(), 1);
        assert_eq!(parse_source("a: [", Format::Yaml).unwrap_err().len(), 1);
        assert_eq!(
            problems("[1, 2]"),
            [": must be an object".trim_start_matches(": ")]
        );
        assert!(
            problems("name: w")
                .iter()
                .any(|p| p == "steps: is required")
        );
    }

    #[test]
    fn fan_out_scope_allows_item_only_inside() {
        assert!(problems(
            "name: w\nsteps:\n  a: { for_each: { items: [1], step: { task: { queue: q, input: \"${{ item }}\" } } } }\n"
        )
        .is_empty());
        let found =
            problems("name: w\nsteps:\n  a: { task: { queue: q, input: \"${{ item }}\" } }\n");
        assert!(found[0].contains("unknown name \"item\""), "{found:?}");
        let found = problems(
            "name: w\nsteps:\n  a: { for_each: { items: [1], step: { sleep: { duration_ms: 1 } } } }\n",
        );
        assert!(
            found.iter().any(|p| p.contains("sleep: unknown key")),
            "{found:?}"
        );
    }

    #[test]
    fn defaults_and_fields_are_read() {
        let value = json!({
            "name": "w",
            "timeout_ms": 10,
            "steps": {
                "a": {"task": {"queue": "q", "priority": 5}, "retry": {"max_attempts": 3, "backoff": {"base_ms": 10}}},
                "b": {"needs": ["a"], "http": {"url": "https://x", "headers": {"k": "v"}}},
                "c": {"compensation": true, "sleep": {"until": "2030-01-01T00:00:00Z"}},
            }
        });
        let def = Definition::from_value(&value).expect("valid");
        assert_eq!(def.timeout_ms, Some(10));
        assert_eq!(def.steps["a"].max_attempts, 3);
        assert_eq!(def.steps["a"].backoff.base_ms, 10);
        assert_eq!(def.steps["b"].max_attempts, DEFAULT_STEP_ATTEMPTS);
        match &def.steps["b"].action {
            Action::Http(h) => {
                assert_eq!(h.method, "POST");
                assert_eq!(h.headers["k"], "v");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(def.main_steps().count(), 2);
    }

    #[test]
    fn compensation_links_are_checked() {
        let found = problems(
            r#"
name: w
steps:
  a: { task: { queue: q }, compensate: undo }
  b: { task: { queue: q }, compensate: undo }
  c: { needs: [undo], task: { queue: q } }
  undo: { task: { queue: q }, compensation: true }
"#,
        );
        assert!(
            found.iter().any(|p| p.contains("already compensates")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("is a compensation step")),
            "{found:?}"
        );
    }
}
