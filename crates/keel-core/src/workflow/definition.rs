//! Workflow definitions: parsed from YAML or JSON and validated in one pass that
//! reports every problem with its path, so a user fixes a file in one round.
//!
//! The stored form of a definition is its canonical JSON (keys sorted, no
//! whitespace): the same content written as YAML or JSON, in any order, is the
//! same version.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::{Backoff, QueueName};

mod check;
use check::Checker;

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

/// One thing wrong with a definition, at a path like `steps.charge.needs[0]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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

/// A `wait_for` on events: the topic, and a condition over `event` (and the
/// run's `input`, `steps`, `run`).
#[derive(Clone, Debug, PartialEq)]
pub struct EventWait {
    pub topic: String,
    pub condition: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Task {
        queue: QueueName,
        input: Value,
        priority: i16,
    },
    Http(HttpSpec),
    /// A notification's request, each value a template; sent by Keel with
    /// the step's dedup key unless it names one.
    Notify(Value),
    Sleep(Sleep),
    /// Waits for a signal, or for the first matching event published to a
    /// topic after the step started.
    WaitFor {
        signal: Option<String>,
        event: Option<EventWait>,
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
    /// The OAuth2 connection the call is made as (a template): Keel adds
    /// its `Authorization` header.
    pub connection: Option<String>,
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

    /// The topics its `wait_for` steps wait on events of.
    pub fn event_topics(&self) -> std::collections::BTreeSet<&str> {
        self.steps
            .values()
            .filter_map(|step| match &step.action {
                Action::WaitFor {
                    event: Some(wait), ..
                } => Some(wait.topic.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Steps of the DAG, not compensations.
    pub fn main_steps(&self) -> impl Iterator<Item = (&String, &Step)> {
        self.steps.iter().filter(|(_, s)| !s.compensation)
    }
}

/// Upper bound on any duration in a definition: ten years.
pub const MAX_TIMEOUT_MS: u64 = 10 * 365 * 24 * 3_600_000;

/// Signal names travel in URLs.
pub fn valid_signal(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STEP_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
            "steps.d.wait_for: give exactly one of signal or event",
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
