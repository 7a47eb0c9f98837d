//! What `keel validate` and `keel lint` check without a server.
//!
//! `validate`: each definition against its kind's schema and rules (the
//! same `keel_core::project` check the server runs), names defined twice,
//! and every name one resource gives another (a subscription's topic, a
//! queue's push endpoint, a schedule's workflow, a monitor's escalation
//! policy, a workflow's `wait_for` topics and child workflows) defined in
//! the project; queues need no definition, as on the server. It also
//! previews each schedule's next fires.
//!
//! `lint`: what is legal but probably wrong.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::project::{HandlerCode, HandlerSpec, Kind, Resource, ResourceId};
use keel_core::schedule::{Cadence, ScheduleSpec, ScheduleTarget};
use keel_core::subscription::{SubscriptionSpec, Target};
use keel_core::workflow::Definition;
use keel_core::workflow::definition::Action;
use keel_core::{QueuePolicy, Timestamp};
use serde_json::Value;

use super::load::{Defined, Problem};

/// How many fires a schedule's preview shows.
const PREVIEW_FIRES: usize = 3;
/// Attempts past which retries are as good as unbounded.
const MANY_ATTEMPTS: u32 = 100;

/// Every problem `validate` finds, and a line per schedule previewing it.
pub(crate) fn validate(defined: &[Defined], now: Timestamp) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut previews = Vec::new();
    let mut ids: BTreeMap<ResourceId, &Defined> = BTreeMap::new();
    for d in defined {
        if let Some(first) = ids.insert(d.resource.id(), d) {
            problems.push(at(
                d,
                format!(
                    "{} is defined twice (also at {})",
                    d.resource.id(),
                    first.at
                ),
            ));
        }
    }
    for d in defined {
        let r = &d.resource;
        let spec = match r.kind.canonical(&r.name, &r.spec) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push(at(d, format!("{}: {}", r.id(), e.message)));
                continue;
            }
        };
        for (kind, name) in references(r.kind, &spec) {
            let wanted = ResourceId {
                kind,
                namespace: r.namespace.clone(),
                name: name.clone(),
            };
            if !ids.contains_key(&wanted) {
                problems.push(at(
                    d,
                    format!(
                        "{} names {} {name:?}, which the project does not define",
                        r.id(),
                        kind.as_str()
                    ),
                ));
            }
        }
        if r.kind == Kind::Schedule
            && let Ok(schedule) = serde_json::from_value::<ScheduleSpec>(spec)
            && let Ok(cadence) = Cadence::new(&schedule)
        {
            previews.push(preview(r, &cadence, now));
        }
    }
    (problems, previews)
}

/// Each handler's code checked as the server checks it, in the same
/// sandbox: JavaScript compiled (a syntax error with its line), a module's
/// imports and exports held against the ABI.
pub(crate) async fn handlers(defined: &[Defined]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let handlers: Vec<&Defined> = defined
        .iter()
        .filter(|d| d.resource.kind == Kind::Handler)
        .collect();
    let Some(first) = handlers.first() else {
        return problems;
    };
    let caps = keel_core::handler::Caps {
        instances: 2,
        ..keel_core::handler::Caps::default()
    };
    let sandbox = match keel_sandbox::Sandbox::new(caps) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            problems.push(at(first, format!("handlers cannot be checked here: {e}")));
            return problems;
        }
    };
    for d in handlers {
        let Ok(spec) = serde_json::from_value::<HandlerSpec>(d.resource.spec.clone()) else {
            continue;
        };
        let checked = match spec.code() {
            Ok(HandlerCode::Js(source)) => sandbox.compile_js(&source).await.map(|_| ()),
            Ok(HandlerCode::Wasm(module)) => sandbox.prepare_wasm(&module).map(|_| ()),
            Err(_) => continue,
        };
        if let Err(refused) = checked {
            problems.push(at(d, format!("{}: {}", d.resource.id(), refused.0)));
        }
    }
    problems
}

/// What `lint` finds: the rule's name with each finding.
pub(crate) fn lint(defined: &[Defined]) -> Vec<Problem> {
    let mut found = Vec::new();
    for d in defined {
        let r = &d.resource;
        let Ok(spec) = r.kind.canonical(&r.name, &r.spec) else {
            continue;
        };
        for message in findings(r, &spec) {
            found.push(at(d, format!("{}: {message}", r.id())));
        }
        secrets(&r.spec, "", &mut |path| {
            found.push(at(
                d,
                format!(
                    "{}: secret-literal: {path} looks like a secret written out; keep secrets \
                     out of the project (`keel handler secrets`, or set it on the server by hand)",
                    r.id()
                ),
            ));
        });
    }
    found
}

fn at(d: &Defined, message: String) -> Problem {
    Problem {
        at: d.at.clone(),
        message,
    }
}

/// The resources a canonical definition names, by kind and name (in its
/// own namespace).
fn references(kind: Kind, spec: &Value) -> Vec<(Kind, String)> {
    let mut names = Vec::new();
    match kind {
        Kind::Subscription => {
            if let Ok(s) =
                serde_json::from_value::<SubscriptionSpec>(Kind::Subscription.compared(spec))
            {
                names.push((Kind::Topic, s.topic.to_string()));
                match s.target {
                    Some(Target::Workflow { workflow, .. }) => {
                        names.push((Kind::Workflow, workflow.to_string()));
                    }
                    Some(Target::Handler { handler, .. }) => {
                        names.push((Kind::Handler, handler.to_string()));
                    }
                    Some(Target::Endpoint { endpoint, .. }) => {
                        names.push((Kind::Endpoint, endpoint.to_string()));
                    }
                    _ => {}
                }
            }
        }
        Kind::Queue => {
            if let Ok(policy) = serde_json::from_value::<QueuePolicy>(spec.clone()) {
                if let Some(push) = policy.push {
                    names.push((Kind::Endpoint, push.endpoint.to_string()));
                }
                if let Some(handler) = policy.handler {
                    names.push((Kind::Handler, handler.to_string()));
                }
            }
        }
        Kind::Schedule => {
            if let Ok(s) = serde_json::from_value::<ScheduleSpec>(spec.clone()) {
                match s.target {
                    ScheduleTarget::Event { topic, .. } => {
                        names.push((Kind::Topic, topic.to_string()));
                    }
                    ScheduleTarget::Run { workflow, .. } => {
                        names.push((Kind::Workflow, workflow.to_string()));
                    }
                    ScheduleTarget::Job { .. } => {}
                }
            }
        }
        Kind::Monitor => {
            for (key, kind) in [
                ("escalation", Kind::EscalationPolicy),
                ("depends_on", Kind::Monitor),
            ] {
                if let Some(name) = spec.get(key).and_then(Value::as_str) {
                    names.push((kind, name.to_owned()));
                }
            }
        }
        Kind::Workflow => {
            if let Ok(def) = Definition::from_value(spec) {
                for topic in def.event_topics() {
                    names.push((Kind::Topic, topic.to_owned()));
                }
                for step in def.steps.values() {
                    let mut action = &step.action;
                    while let Action::ForEach { step, .. } = action {
                        action = step;
                    }
                    if let Action::Workflow { name, .. } = action {
                        names.push((Kind::Workflow, name.clone()));
                    }
                }
            }
        }
        Kind::Endpoint | Kind::Template | Kind::EscalationPolicy | Kind::Handler | Kind::Topic => {}
    }
    names
}

fn preview(r: &Resource, cadence: &Cadence, now: Timestamp) -> String {
    let mut fires = Vec::new();
    let mut after = now;
    while fires.len() < PREVIEW_FIRES {
        let Some(next) = cadence.next_after(after) else {
            break;
        };
        fires.push(cadence.local(next));
        after = next;
    }
    if fires.is_empty() {
        format!("{}: fires no more", r.id())
    } else {
        format!("{}: next {}", r.id(), fires.join(", "))
    }
}

/// The lint rules on one canonical definition.
fn findings(r: &Resource, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match r.kind {
        Kind::Queue => {
            if let Ok(policy) = serde_json::from_value::<QueuePolicy>(spec.clone()) {
                if policy.max_attempts.is_some_and(|n| n >= MANY_ATTEMPTS) {
                    out.push(format!(
                        "unbounded-retries: max_attempts {} retries for as good as ever; \
                         a job that cannot succeed should reach the dead letters",
                        policy.max_attempts.unwrap_or_default()
                    ));
                }
                if policy.dead_retention_ms == Some(0) {
                    out.push(
                        "no-dead-letter: dead_retention_ms 0 drops failed jobs at once; \
                         nothing is left to inspect or redrive"
                            .to_owned(),
                    );
                }
            }
        }
        Kind::Subscription => {
            if let Ok(s) =
                serde_json::from_value::<SubscriptionSpec>(Kind::Subscription.compared(spec))
            {
                match s.target {
                    None => out.push(
                        "no-dead-letter: a pulled subscription has no dead-letter path; an \
                         event its consumer cannot handle is handed out again until the topic's \
                         retention drops it (deliver to a queue for retries and dead letters)"
                            .to_owned(),
                    ),
                    Some(Target::Queue { job, .. }) => {
                        if let Some(n) = job.and_then(|j| j.max_attempts)
                            && n >= MANY_ATTEMPTS
                        {
                            out.push(format!(
                                "unbounded-retries: target.job.max_attempts {n} retries for as good as ever"
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Kind::Workflow => {
            if let Ok(def) = Definition::from_value(spec) {
                for (name, step) in def.main_steps() {
                    let waits = matches!(step.action, Action::Task { .. } | Action::Http(_));
                    if waits && step.timeout_ms.is_none() && def.timeout_ms.is_none() {
                        out.push(format!(
                            "no-timeout: step {name} has no timeout_ms, nor has the run; a \
                             worker or a server that never answers holds the run forever"
                        ));
                    }
                    if step.max_attempts >= MANY_ATTEMPTS {
                        out.push(format!(
                            "unbounded-retries: step {name} retries {} times",
                            step.max_attempts
                        ));
                    }
                }
            }
        }
        Kind::Endpoint
        | Kind::Template
        | Kind::EscalationPolicy
        | Kind::Handler
        | Kind::Topic
        | Kind::Schedule
        | Kind::Monitor => {}
    }
    out
}

/// Calls `found` with the path of each string that looks like a secret:
/// under a key that names one, or shaped like a known kind of key, or a
/// URL with a password in it. Templates (`{{ … }}`) are not literals.
fn secrets(value: &Value, path: &str, found: &mut dyn FnMut(&str)) {
    const KEYS: [&str; 6] = [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
    ];
    const SHAPES: [&str; 10] = [
        "whsec_",
        "sk_live_",
        "sk_test_",
        "xoxb-",
        "xoxp-",
        "ghp_",
        "github_pat_",
        "AKIA",
        "-----BEGIN",
        "Bearer ",
    ];
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let named = KEYS.iter().any(|k| key.to_ascii_lowercase().contains(k));
                if let (true, Value::String(s)) = (named, v)
                    && !s.is_empty()
                    && !s.contains("{{")
                {
                    found(&here);
                    continue;
                }
                secrets(v, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                secrets(v, &format!("{path}[{i}]"), found);
            }
        }
        Value::String(s) => {
            let shaped = SHAPES.iter().any(|p| s.starts_with(p));
            let url_password = s
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .is_some_and(|(user, _)| user.contains(':') && !user.contains('/'));
            if (shaped || url_password) && !s.contains("{{") {
                found(path);
            }
        }
        _ => {}
    }
}

/// The definitions a plan sends, in file order.
pub(crate) fn resources(defined: &[Defined]) -> Vec<Resource> {
    let mut seen = BTreeSet::new();
    defined
        .iter()
        .filter(|d| seen.insert(d.resource.id()))
        .map(|d| d.resource.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_looking_literals_are_found_and_templates_are_not() {
        let spec = json!({
            "headers": {"Authorization": "Bearer abc", "X-Trace": "1"},
            "url": "https://user:hunter2@example.com/x",
            "plain": "https://example.com/a@b",
            "token": "{{ secrets.token }}",
            "list": ["whsec_abc"]
        });
        let mut paths = Vec::new();
        secrets(&spec, "", &mut |p| paths.push(p.to_owned()));
        assert_eq!(paths, vec!["headers.Authorization", "list[0]", "url"]);
    }
}
